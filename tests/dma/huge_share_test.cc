// The huge share from smaps: the parser on written-out smaps text, and the
// real /proc/self/smaps of this process for hugetlb and 4 KiB memory.
#include "dma/huge_share.h"

#include <gtest/gtest.h>
#include <sys/mman.h>

#include <cstring>
#include <string>

#include "dma/contiguity.h"
#include "support/hugepage_pool.h"

namespace vfiod::dma {
namespace {

// One VMA of smaps text: its header and the fields that matter here.
std::string Vma(uint64_t start, uint64_t end, uint64_t kernel_page_kb, uint64_t pmd_kb,
                uint64_t hugetlb_kb = 0) {
  char header[128];
  std::snprintf(header, sizeof header, "%lx-%lx rw-s 00000000 00:01 1234    /memfd:x (deleted)\n",
                static_cast<unsigned long>(start), static_cast<unsigned long>(end));
  return std::string(header) + "Size:  " + std::to_string((end - start) >> 10) +
         " kB\nKernelPageSize:  " + std::to_string(kernel_page_kb) +
         " kB\nMMUPageSize:  " + std::to_string(kernel_page_kb) +
         " kB\nRss:  0 kB\nAnonHugePages:  0 kB\nShmemPmdMapped:  " + std::to_string(pmd_kb) +
         " kB\nFilePmdMapped:  0 kB\nShared_Hugetlb:  0 kB\nPrivate_Hugetlb:  " +
         std::to_string(hugetlb_kb) + " kB\nTHPeligible:  1\nVmFlags: rd wr sh mr mw me ms \n";
}

constexpr uint64_t kA = 0x7f0000000000;
constexpr uint64_t k8M = 8 << 20;

TEST(HugeShareSmaps, CountsPmdMappedBytesOfWholeVmas) {
  const std::string text = Vma(kA - 0x1000, kA, 4, 0) + Vma(kA, kA + k8M, 4, 6144) +
                           Vma(kA + k8M, kA + 2 * k8M, 2048, 0, 8192);
  EXPECT_EQ(HugeBytesFromSmaps(text, kA, k8M).value(), std::optional<uint64_t>(6144 << 10));
  // Two adjacent VMAs together; hugetlb counts its hugetlb pages, not PMD fields.
  EXPECT_EQ(HugeBytesFromSmaps(text, kA, 2 * k8M).value(),
            std::optional<uint64_t>((6144 + 8192) << 10));
}

TEST(HugeShareSmaps, APartOfAVmaOrAHoleCannotBeTold) {
  const std::string text = Vma(kA, kA + k8M, 4, 8192) + Vma(kA + 2 * k8M, kA + 3 * k8M, 4, 0);
  EXPECT_EQ(HugeBytesFromSmaps(text, kA, k8M / 2).value(), std::nullopt);     // part
  EXPECT_EQ(HugeBytesFromSmaps(text, kA, 3 * k8M).value(), std::nullopt);     // hole
  EXPECT_EQ(HugeBytesFromSmaps(text, kA + k8M, k8M).value(), std::nullopt);   // nothing there
  EXPECT_EQ(HugeBytesFromSmaps(text, kA - 4096, k8M).value(), std::nullopt);  // starts before
}

TEST(HugeShareSmaps, BadInputIsAnError) {
  EXPECT_EQ(HugeBytesFromSmaps("", kA, 0).error().code, EINVAL);
  EXPECT_EQ(HugeBytesFromSmaps("", ~uint64_t{0} - 4095, 8192).error().code, EINVAL);
  EXPECT_EQ(HugeBytesFromSmaps("Size: 4 kB\n", kA, 4096).error().code, EPROTO);  // no header
  EXPECT_EQ(HugeBytesFromSmaps(Vma(kA, kA + k8M, 4, 0) + "garbage\n", kA, k8M).error().code,
            EPROTO);
}

// The real smaps of this process: a touched 2 MiB hugetlb mapping is all
// huge; populated 4 KiB anonymous memory none of it.
TEST(HugeShareSmaps, ReadsThisProcessesSmaps) {
  auto reader = ProcPageInfoReader::Open();
  ASSERT_TRUE(reader.has_value()) << reader.error().message();
  constexpr uint64_t kSize = 4 << 20;
  void* small = ::mmap(nullptr, kSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(small, MAP_FAILED);
  ASSERT_EQ(::madvise(small, kSize, MADV_NOHUGEPAGE), 0);
  std::memset(small, 1, kSize);
  auto text = (*reader)->ReadSmaps();
  ASSERT_TRUE(text.has_value()) << text.error().message();
  EXPECT_EQ(HugeBytesFromSmaps(*text, reinterpret_cast<uint64_t>(small), kSize).value(),
            std::optional<uint64_t>(0));
  ::munmap(small, kSize);

  testing::HugepagePool2M pool(2);
  ASSERT_TRUE(pool.ok()) << "no 2 MiB hugepages could be made free (root needed)";
  void* huge = ::mmap(nullptr, kSize, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB, -1, 0);
  ASSERT_NE(huge, MAP_FAILED);
  std::memset(huge, 1, kSize);
  text = (*reader)->ReadSmaps();
  ASSERT_TRUE(text.has_value());
  EXPECT_EQ(HugeBytesFromSmaps(*text, reinterpret_cast<uint64_t>(huge), kSize).value(),
            std::optional<uint64_t>(kSize));
  ::munmap(huge, kSize);
}

}  // namespace
}  // namespace vfiod::dma
