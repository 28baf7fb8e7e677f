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
#include <string>

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
      MapAligned(k4KiB * 3, k2MiB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ASSERT_TRUE(memory) << memory.error().message();
  EXPECT_TRUE(IsAligned(memory->vaddr(), k2MiB));
  EXPECT_EQ(memory->size(), k4KiB * 3);
  // The page just past the mapping was given back: mincore reports ENOMEM.
  unsigned char vec = 0;
  EXPECT_EQ(::mincore(reinterpret_cast<void*>(memory->vaddr() + 3 * k4KiB), k4KiB, &vec), -1);
  EXPECT_EQ(errno, ENOMEM);
}

TEST(MapAlignedTest, PlacesTheMappingAtTheAskedPhase) {
  auto memory = MapAligned(k4KiB * 3, k2MiB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                           -1, 0, 5 * k4KiB);
  ASSERT_TRUE(memory) << memory.error().message();
  EXPECT_EQ(memory->vaddr() % k2MiB, 5 * k4KiB);
  EXPECT_FALSE(MapAligned(k4KiB, k2MiB, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0, 1));
}

TEST(MapAlignedTest, RejectsBadAlignment) {
  auto memory = MapAligned(k4KiB, 3 * k4KiB, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ASSERT_FALSE(memory);
  EXPECT_EQ(memory.error().code, EINVAL);
}

TEST(PagesBackingTest, ShareableFourKilobytePagesArePopulatedSealedAndShared) {
  auto backing = CreatePagesBacking(16 * k4KiB, /*shareable=*/true);
  ASSERT_TRUE(backing) << backing.error().message();
  EXPECT_EQ(backing->kind(), BackingKind::k4K);
  EXPECT_EQ(backing->size(), 16 * k4KiB);
  EXPECT_EQ(backing->page_size(), k4KiB);
  EXPECT_FALSE(backing->mmio());
  ASSERT_GE(backing->fd(), 0);
  EXPECT_EQ(Seals(backing->fd()) & (F_SEAL_SHRINK | F_SEAL_GROW), F_SEAL_SHRINK | F_SEAL_GROW);
  // Populated: every page resident before anyone touched it.
  std::vector<unsigned char> resident(16);
  ASSERT_EQ(::mincore(backing->data(), backing->size(), resident.data()), 0);
  for (unsigned char page : resident) {
    EXPECT_EQ(page & 1, 1);
  }
  std::memcpy(static_cast<char*>(backing->data()) + 5 * k4KiB, "vfiod", 5);
  EXPECT_EQ(ReadThroughFd(backing->fd(), 5 * k4KiB, 5), "vfiod");
}

TEST(PagesBackingTest, AnonymousHasNoFd) {
  auto backing = CreatePagesBacking(4 * k4KiB, /*shareable=*/false);
  ASSERT_TRUE(backing) << backing.error().message();
  EXPECT_EQ(backing->fd(), -1);
  EXPECT_TRUE(IsAligned(backing->vaddr(), k4KiB));
}

TEST(PagesBackingTest, RejectsBadSizesWithoutLeaking) {
  const int fds = CountOpenFds();
  for (uint64_t size : {uint64_t{0}, k4KiB + 1}) {
    auto backing = CreatePagesBacking(size, true);
    ASSERT_FALSE(backing);
    EXPECT_EQ(backing.error().code, EINVAL);
  }
  EXPECT_EQ(CountOpenFds(), fds);
}

TEST(ThpBackingTest, IsTwoMegabyteAlignedAndAdvisedHuge) {
  auto backing = CreateThpBacking(2 * k2MiB, /*shareable=*/false);
  ASSERT_TRUE(backing) << backing.error().message();
  EXPECT_EQ(backing->kind(), BackingKind::kThp);
  EXPECT_EQ(backing->alignment(), k2MiB);
  EXPECT_TRUE(IsAligned(backing->vaddr(), k2MiB));
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
  auto backing = CreateThpBacking(k2MiB, /*shareable=*/true);
  ASSERT_TRUE(backing) << backing.error().message();
  ASSERT_GE(backing->fd(), 0);
  struct statfs fs {};
  ASSERT_EQ(::fstatfs(backing->fd(), &fs), 0);
  EXPECT_EQ(fs.f_type, TMPFS_MAGIC);
  // The shmem view is PMD-mappable: the engine places it without a scan.
  EXPECT_TRUE(IsAligned(backing->vaddr(), k2MiB));
  EXPECT_EQ(backing->alignment(), k2MiB);
}

TEST(HugetlbBackingTest, RejectsUnsupportedPageSizeAndSize) {
  auto odd_page = CreateHugetlbBacking(k2MiB, 4 * k2MiB);
  ASSERT_FALSE(odd_page);
  EXPECT_EQ(odd_page.error().code, EINVAL);
  auto odd_size = CreateHugetlbBacking(k2MiB + k4KiB, k2MiB);
  ASSERT_FALSE(odd_size);
  EXPECT_EQ(odd_size.error().code, EINVAL);
}

uint64_t ReadCounter(const std::string& path) {
  std::ifstream in(path);
  uint64_t value = 0;
  in >> value;
  return value;
}

bool WriteCounter(const std::string& path, uint64_t value) {
  std::ofstream out(path);
  out << value;
  out.flush();
  return static_cast<bool>(out);
}

std::string Pool(uint64_t page) {
  return "/sys/kernel/mm/hugepages/hugepages-" + std::to_string(page >> 10) + "kB/";
}

// A pool asked for more pages than it has fails with ENOMEM naming the pool,
// and leaves no fd behind. Needs no reserved pages: it asks for one more than
// are free.
void ExpectPoolExhaustion(uint64_t page) {
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
  EXPECT_THAT(backing.error().detail, HasSubstr(page == k1GiB ? "no free 1 GiB hugepages: see "
                                                              : "no free 2 MiB hugepages: see "));
  EXPECT_THAT(backing.error().detail, HasSubstr(Pool(page)));
  EXPECT_EQ(CountOpenFds(), fds);
}

TEST(HugetlbBackingTest, EmptyTwoMegabytePoolFailsClearly) { ExpectPoolExhaustion(k2MiB); }

// A client's hugetlbfs file with holes the pool cannot fill is refused at
// adoption (the shared mmap reserves them), not left to fail at MAP_DMA.
TEST(HugetlbBackingTest, ClientFileWithHolesBeyondThePoolIsRefusedAtAdoption) {
  if (ReadCounter(Pool(k2MiB) + "nr_overcommit_hugepages") != 0) {
    GTEST_SKIP() << "hugepage overcommit is on: the pool never looks exhausted";
  }
  const uint64_t size = (ReadCounter(Pool(k2MiB) + "free_hugepages") + 1) * k2MiB;
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
TEST(HugetlbBackingTest, EmptyOneGigabytePoolFailsClearly) { ExpectPoolExhaustion(k1GiB); }

// Reserves `count` more 2 MiB pages for the test and gives them back after.
class TwoMegabytePool : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = Pool(k2MiB) + "nr_hugepages";
    before_ = ReadCounter(path_);
    if (::access(path_.c_str(), W_OK) != 0 || !WriteCounter(path_, before_ + 2) ||
        ReadCounter(Pool(k2MiB) + "free_hugepages") < 2) {
      WriteCounter(path_, before_);
      GTEST_SKIP() << "cannot reserve two 2 MiB hugepages (needs root and free memory)";
    }
  }
  void TearDown() override { WriteCounter(path_, before_); }
  std::string path_;
  uint64_t before_ = 0;
};

TEST_F(TwoMegabytePool, CreatesSealedAlignedHugetlbMemory) {
  const uint64_t free_before = ReadCounter(Pool(k2MiB) + "free_hugepages");
  {
    auto backing = CreateHugetlbBacking(2 * k2MiB, k2MiB);
    ASSERT_TRUE(backing) << backing.error().message();
    EXPECT_EQ(backing->kind(), BackingKind::kHugetlb2M);
    EXPECT_EQ(backing->page_size(), k2MiB);
    EXPECT_TRUE(IsAligned(backing->vaddr(), k2MiB));
    EXPECT_EQ(Seals(backing->fd()) & F_SEAL_SHRINK, F_SEAL_SHRINK);
    // fallocate took the pages from the pool up front.
    EXPECT_EQ(ReadCounter(Pool(k2MiB) + "free_hugepages"), free_before - 2);
    std::memcpy(static_cast<char*>(backing->data()) + k2MiB, "huge", 4);
    EXPECT_EQ(ReadThroughFd(backing->fd(), k2MiB, 4), "huge");
  }
  EXPECT_EQ(ReadCounter(Pool(k2MiB) + "free_hugepages"), free_before);
}

TEST_F(TwoMegabytePool, ClientHugetlbMemfdIsAccepted) {
  UniqueFd fd(::memfd_create("client-huge", MFD_CLOEXEC | MFD_ALLOW_SEALING | MFD_HUGETLB));
  ASSERT_TRUE(fd.valid());
  ASSERT_EQ(::ftruncate(fd.get(), static_cast<off_t>(2 * k2MiB)), 0);
  auto backing = AdoptClientFd(std::move(fd), k2MiB, k2MiB);
  ASSERT_TRUE(backing) << backing.error().message();
  EXPECT_EQ(backing->page_size(), k2MiB);
  EXPECT_EQ(backing->fd_offset(), k2MiB);
  EXPECT_TRUE(IsAligned(backing->vaddr(), k2MiB));
}

}  // namespace
}  // namespace vfiod::dma
