// Backings on the host kernel: every kind that works without VFIO, their
// errors, and that failures leak neither fds nor mappings.
#include "dma/backing.h"

#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <linux/magic.h>
#include <linux/memfd.h>
#include <sys/mman.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <optional>
#include <string>

#include "support/hugepage_pool.h"
#include "support/open_fds.h"

namespace vfiod::dma {
namespace {

using ::testing::HasSubstr;

using vfiod::testing::CountOpenFds;

int Seals(int fd) { return ::fcntl(fd, F_GET_SEALS); }

// Another view of the backing's fd, to prove the fd shares the memory.
std::string ReadThroughFd(int fd, uint64_t offset, size_t len) {
  std::string out(len, '\0');
  EXPECT_EQ(::pread(fd, out.data(), len, static_cast<off_t>(offset)), static_cast<ssize_t>(len));
  return out;
}

TEST(MapAlignedTest, ReturnsAnAlignedMappingAndFreesTheSlop) {
  auto memory =
      MapAligned(kPage4K * 3, kPage2M, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ASSERT_TRUE(memory) << memory.error().message();
  EXPECT_TRUE(IsAligned(memory->vaddr(), kPage2M));
  EXPECT_EQ(memory->size(), kPage4K * 3);
  // The page just past the mapping was given back: mincore reports ENOMEM.
  unsigned char vec = 0;
  EXPECT_EQ(::mincore(reinterpret_cast<void*>(memory->vaddr() + 3 * kPage4K), kPage4K, &vec), -1);
  EXPECT_EQ(errno, ENOMEM);
}

TEST(MapAlignedTest, PlacesTheMappingAtTheAskedPhase) {
  auto memory = MapAligned(kPage4K * 3, kPage2M, PROT_READ | PROT_WRITE,
                           MAP_PRIVATE | MAP_ANONYMOUS, -1, 0, 5 * kPage4K);
  ASSERT_TRUE(memory) << memory.error().message();
  EXPECT_EQ(memory->vaddr() % kPage2M, 5 * kPage4K);
  EXPECT_FALSE(MapAligned(kPage4K, kPage2M, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0, 1));
}

TEST(MapAlignedTest, RejectsBadAlignment) {
  auto memory = MapAligned(kPage4K, 3 * kPage4K, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ASSERT_FALSE(memory);
  EXPECT_EQ(memory.error().code, EINVAL);
}

TEST(PagesBackingTest, ShareableFourKilobytePagesArePopulatedSealedAndShared) {
  auto backing = CreatePagesBacking(16 * kPage4K, /*shareable=*/true);
  ASSERT_TRUE(backing) << backing.error().message();
  EXPECT_EQ(backing->kind(), BackingKind::k4K);
  EXPECT_EQ(backing->size(), 16 * kPage4K);
  EXPECT_EQ(backing->page_size(), kPage4K);
  EXPECT_FALSE(backing->mmio());
  ASSERT_GE(backing->fd(), 0);
  EXPECT_EQ(Seals(backing->fd()) & (F_SEAL_SHRINK | F_SEAL_GROW), F_SEAL_SHRINK | F_SEAL_GROW);
  // Populated: every page resident before anyone touched it.
  std::vector<unsigned char> resident(16);
  ASSERT_EQ(::mincore(backing->data(), backing->size(), resident.data()), 0);
  for (unsigned char page : resident) {
    EXPECT_EQ(page & 1, 1);
  }
  std::memcpy(static_cast<char*>(backing->data()) + 5 * kPage4K, "vfiod", 5);
  EXPECT_EQ(ReadThroughFd(backing->fd(), 5 * kPage4K, 5), "vfiod");
}

TEST(PagesBackingTest, AnonymousHasNoFd) {
  auto backing = CreatePagesBacking(4 * kPage4K, /*shareable=*/false);
  ASSERT_TRUE(backing) << backing.error().message();
  EXPECT_EQ(backing->fd(), -1);
  EXPECT_TRUE(IsAligned(backing->vaddr(), kPage4K));
}

TEST(PagesBackingTest, RejectsBadSizesWithoutLeaking) {
  const int fds = CountOpenFds();
  for (uint64_t size : {uint64_t{0}, kPage4K + 1}) {
    auto backing = CreatePagesBacking(size, true);
    ASSERT_FALSE(backing);
    EXPECT_EQ(backing.error().code, EINVAL);
  }
  EXPECT_EQ(CountOpenFds(), fds);
}

TEST(ThpBackingTest, IsTwoMegabyteAlignedAndAdvisedHuge) {
  auto backing = CreateThpBacking(2 * kPage2M, /*shareable=*/false);
  ASSERT_TRUE(backing) << backing.error().message();
  EXPECT_EQ(backing->kind(), BackingKind::kThp);
  EXPECT_EQ(backing->alignment(), kPage2M);
  EXPECT_TRUE(IsAligned(backing->vaddr(), kPage2M));
  EXPECT_EQ(backing->fd(), -1);
  // The VMA carries the advice: smaps lists "hg" in VmFlags for it.
  std::ifstream smaps("/proc/self/smaps");
  std::string line;
  bool in_vma = false;
  bool advised = false;
  char head[32];
  std::snprintf(head, sizeof head, "%lx-", static_cast<unsigned long>(backing->vaddr()));
  while (std::getline(smaps, line)) {
    if (line.find(' ') < line.find(':')) {  // a VMA header, not a "Key:" line
      in_vma = line.starts_with(head);
    }
    if (in_vma && line.starts_with("VmFlags:")) {
      advised = line.find(" hg") != std::string::npos;
    }
  }
  EXPECT_TRUE(advised);
}

TEST(ThpBackingTest, ShareableGivesAMemfd) {
  auto backing = CreateThpBacking(kPage2M, /*shareable=*/true);
  ASSERT_TRUE(backing) << backing.error().message();
  ASSERT_GE(backing->fd(), 0);
  struct statfs fs {};
  ASSERT_EQ(::fstatfs(backing->fd(), &fs), 0);
  EXPECT_EQ(fs.f_type, TMPFS_MAGIC);
  // The shmem view is PMD-mappable: the engine places it without a scan.
  EXPECT_TRUE(IsAligned(backing->vaddr(), kPage2M));
  EXPECT_EQ(backing->alignment(), kPage2M);
}

TEST(HugetlbBackingTest, RejectsUnsupportedPageSizeAndSize) {
  auto odd_page = CreateHugetlbBacking(kPage2M, 4 * kPage2M);
  ASSERT_FALSE(odd_page);
  EXPECT_EQ(odd_page.error().code, EINVAL);
  auto odd_size = CreateHugetlbBacking(kPage2M + kPage4K, kPage2M);
  ASSERT_FALSE(odd_size);
  EXPECT_EQ(odd_size.error().code, EINVAL);
}

uint64_t ReadCounter(const std::string& path) {
  std::ifstream in(path);
  uint64_t value = 0;
  in >> value;
  return value;
}

std::string Pool(uint64_t page) {
  return "/sys/kernel/mm/hugepages/hugepages-" + std::to_string(page >> 10) + "kB/";
}

// A pool asked for more pages than it has fails with ENOMEM naming the pool,
// and leaves no fd behind. Needs no reserved pages: it asks for one more than
// are free, holding the pool's lock (HugepagePool2M of 0 pages) so that no
// test of another binary changes the pool between the count and the ask.
void ExpectPoolExhaustion(uint64_t page) {
  const vfiod::testing::HugepagePool2M lock(0);
  if (::access(Pool(page).c_str(), F_OK) != 0) {
    GTEST_SKIP() << "no " << page << "-byte hugepage pool on this kernel";
  }
  if (ReadCounter(Pool(page) + "nr_overcommit_hugepages") != 0) {
    GTEST_SKIP() << "hugepage overcommit is on: the pool never looks exhausted";
  }
  const uint64_t free_pages = ReadCounter(Pool(page) + "free_hugepages");
  const int fds = CountOpenFds();
  auto backing = CreateHugetlbBacking((free_pages + 1) * page, page);
  ASSERT_FALSE(backing);
  EXPECT_EQ(backing.error().code, ENOMEM);
  EXPECT_THAT(backing.error().detail, HasSubstr(page == kPage1G ? "no free 1 GiB hugepages: see "
                                                                : "no free 2 MiB hugepages: see "));
  EXPECT_THAT(backing.error().detail, HasSubstr(Pool(page)));
  EXPECT_EQ(CountOpenFds(), fds);
}

TEST(HugetlbBackingTest, EmptyTwoMegabytePoolFailsClearly) { ExpectPoolExhaustion(kPage2M); }

// A client's hugetlbfs file with holes the pool cannot fill is refused at
// adoption (the shared mmap reserves them), not left to fail at MAP_DMA.
TEST(HugetlbBackingTest, ClientFileWithHolesBeyondThePoolIsRefusedAtAdoption) {
  const vfiod::testing::HugepagePool2M lock(0);  // as ExpectPoolExhaustion
  if (ReadCounter(Pool(kPage2M) + "nr_overcommit_hugepages") != 0) {
    GTEST_SKIP() << "hugepage overcommit is on: the pool never looks exhausted";
  }
  const uint64_t size = (ReadCounter(Pool(kPage2M) + "free_hugepages") + 1) * kPage2M;
  UniqueFd fd(
      ::memfd_create("holes", MFD_CLOEXEC | MFD_ALLOW_SEALING | MFD_HUGETLB | MFD_HUGE_2MB));
  if (!fd.valid()) {
    GTEST_SKIP() << "no 2 MiB hugetlbfs memfd on this kernel";
  }
  ASSERT_EQ(::ftruncate(fd.get(), static_cast<off_t>(size)), 0);
  const int fds = CountOpenFds() - 1;
  auto backing = AdoptClientFd(std::move(fd), 0, size);
  ASSERT_FALSE(backing);
  EXPECT_EQ(backing.error().code, ENOMEM);
  EXPECT_THAT(backing.error().detail, HasSubstr("hugepage pool"));
  EXPECT_EQ(CountOpenFds(), fds);
}
TEST(HugetlbBackingTest, EmptyOneGigabytePoolFailsClearly) { ExpectPoolExhaustion(kPage1G); }

// Reserves two more 2 MiB pages for the test and gives them back after,
// under the pool's lock (tests of other binaries raise it too).
class TwoMegabytePool : public ::testing::Test {
 protected:
  void SetUp() override {
    pool_.emplace(2);
    if (!pool_->ok()) {
      GTEST_SKIP() << "cannot reserve two 2 MiB hugepages (needs root and free memory)";
    }
  }
  void TearDown() override { pool_.reset(); }
  std::optional<vfiod::testing::HugepagePool2M> pool_;
};

TEST_F(TwoMegabytePool, CreatesSealedAlignedHugetlbMemory) {
  const uint64_t free_before = ReadCounter(Pool(kPage2M) + "free_hugepages");
  {
    auto backing = CreateHugetlbBacking(2 * kPage2M, kPage2M);
    ASSERT_TRUE(backing) << backing.error().message();
    EXPECT_EQ(backing->kind(), BackingKind::kHugetlb2M);
    EXPECT_EQ(backing->page_size(), kPage2M);
    EXPECT_TRUE(IsAligned(backing->vaddr(), kPage2M));
    EXPECT_EQ(Seals(backing->fd()) & F_SEAL_SHRINK, F_SEAL_SHRINK);
    // fallocate took the pages from the pool up front.
    EXPECT_EQ(ReadCounter(Pool(kPage2M) + "free_hugepages"), free_before - 2);
    std::memcpy(static_cast<char*>(backing->data()) + kPage2M, "huge", 4);
    EXPECT_EQ(ReadThroughFd(backing->fd(), kPage2M, 4), "huge");
  }
  EXPECT_EQ(ReadCounter(Pool(kPage2M) + "free_hugepages"), free_before);
}

TEST_F(TwoMegabytePool, ClientHugetlbMemfdIsAccepted) {
  UniqueFd fd(::memfd_create("client-huge", MFD_CLOEXEC | MFD_ALLOW_SEALING | MFD_HUGETLB));
  ASSERT_TRUE(fd.valid());
  ASSERT_EQ(::ftruncate(fd.get(), static_cast<off_t>(2 * kPage2M)), 0);
  auto backing = AdoptClientFd(std::move(fd), kPage2M, kPage2M);
  ASSERT_TRUE(backing) << backing.error().message();
  EXPECT_EQ(backing->page_size(), kPage2M);
  EXPECT_EQ(backing->fd_offset(), kPage2M);
  EXPECT_TRUE(IsAligned(backing->vaddr(), kPage2M));
}

}  // namespace
}  // namespace vfiod::dma
