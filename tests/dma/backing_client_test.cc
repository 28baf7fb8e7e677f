// AdoptClientFd: only a sealable memfd or hugetlbfs file, read-write, long
// enough, with aligned offsets; every refusal has a stable errno and leaks
// nothing.
#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <linux/magic.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "dma/backing.h"
#include "support/open_fds.h"

namespace vfiod::dma {
namespace {

using ::testing::HasSubstr;

using vfiod::testing::CountOpenFds;

UniqueFd MakeMemfd(uint64_t size, unsigned int flags = MFD_ALLOW_SEALING) {
  UniqueFd fd(::memfd_create("client-test", MFD_CLOEXEC | flags));
  EXPECT_TRUE(fd.valid());
  EXPECT_EQ(::ftruncate(fd.get(), static_cast<off_t>(size)), 0);
  return fd;
}

// Adopts and expects failure with `code`; checks that no fd is left open.
Error ExpectRefused(UniqueFd fd, uint64_t offset, uint64_t length, int code) {
  const int fds_without_it = CountOpenFds() - (fd.valid() ? 1 : 0);
  auto backing = AdoptClientFd(std::move(fd), offset, length);
  EXPECT_FALSE(backing);
  if (backing) {
    return {};
  }
  EXPECT_EQ(backing.error().code, code) << backing.error().message();
  EXPECT_EQ(CountOpenFds(), fds_without_it);
  return backing.error();
}

TEST(ClientFdTest, AdoptsAMemfdRangeAndSharesIt) {
  UniqueFd fd = MakeMemfd(8 * kPage4K);
  UniqueFd client_view(::dup(fd.get()));
  auto backing = AdoptClientFd(std::move(fd), 2 * kPage4K, 4 * kPage4K);
  ASSERT_TRUE(backing) << backing.error().message();
  EXPECT_EQ(backing->kind(), BackingKind::kMemfd);
  EXPECT_EQ(backing->size(), 4 * kPage4K);
  EXPECT_EQ(backing->fd_offset(), 2 * kPage4K);
  EXPECT_EQ(backing->page_size(), kPage4K);
  // The client's writes show in vfiod's mapping at the right offset.
  ASSERT_EQ(::pwrite(client_view.get(), "dma", 3, 3 * kPage4K), 3);
  EXPECT_EQ(std::memcmp(static_cast<char*>(backing->data()) + kPage4K, "dma", 3), 0);
  // Sealed: the client can no longer pull the pages out from under a pin.
  EXPECT_NE(::fcntl(client_view.get(), F_GET_SEALS) & F_SEAL_SHRINK, 0);
  EXPECT_EQ(::ftruncate(client_view.get(), 0), -1);
  EXPECT_EQ(errno, EPERM);
}

// Pages of [addr, addr + len) resident in the page cache.
size_t ResidentPages(const void* addr, uint64_t len) {
  std::vector<unsigned char> vec(len / kPage4K);
  EXPECT_EQ(::mincore(const_cast<void*>(addr), len, vec.data()), 0);
  return static_cast<size_t>(std::count_if(vec.begin(), vec.end(), [](auto v) { return v & 1; }));
}

TEST(ClientFdTest, ShmemViewIsCongruentWithTheFileOffsetModTwoMegabytes) {
  auto whole = AdoptClientFd(MakeMemfd(2 * kPage2M), 0, 2 * kPage2M);
  ASSERT_TRUE(whole) << whole.error().message();
  EXPECT_TRUE(IsAligned(whole->vaddr(), kPage2M));
  EXPECT_EQ(whole->alignment(), kPage2M);
  auto slice = AdoptClientFd(MakeMemfd(2 * kPage2M), 3 * kPage4K, kPage2M);
  ASSERT_TRUE(slice) << slice.error().message();
  EXPECT_EQ(slice->vaddr() % kPage2M, 3 * kPage4K);
  EXPECT_EQ(slice->alignment(), kPage4K);
}

TEST(ClientFdTest, ShmemIsNotPopulatedByTheAdoption) {
  UniqueFd fd = MakeMemfd(64 * kPage4K);
  UniqueFd client_view(::dup(fd.get()));
  ASSERT_EQ(::pwrite(client_view.get(), "x", 1, 5 * kPage4K), 1);  // one page allocated
  auto backing = AdoptClientFd(std::move(fd), 0, 64 * kPage4K);
  ASSERT_TRUE(backing) << backing.error().message();
  EXPECT_EQ(ResidentPages(backing->data(), 64 * kPage4K), 1u);
}

TEST(ClientFdTest, AcceptsAnAlreadySealedMemfd) {
  UniqueFd fd = MakeMemfd(kPage4K);
  ASSERT_EQ(::fcntl(fd.get(), F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_SEAL), 0);
  auto backing = AdoptClientFd(std::move(fd), 0, kPage4K);
  EXPECT_TRUE(backing) << backing.error().message();
}

TEST(ClientFdTest, RefusesNoFd) { ExpectRefused(UniqueFd(), 0, kPage4K, EBADF); }

// A memfd made without MFD_ALLOW_SEALING has its sealing locked (F_SEAL_SEAL)
// from the start, as every file opened by path on tmpfs or hugetlbfs: taken
// unsealed, and the client may then shrink and punch it under vfiod's view
// without faulting vfiod (which never touches that memory).
TEST(ClientFdTest, TakesAFileWhoseSealingIsLockedUnsealed) {
  UniqueFd fd = MakeMemfd(4 * kPage4K, 0);
  UniqueFd client_view(::dup(fd.get()));
  auto backing = AdoptClientFd(std::move(fd), 0, 4 * kPage4K);
  ASSERT_TRUE(backing) << backing.error().message();
  EXPECT_EQ(::fcntl(client_view.get(), F_GET_SEALS), F_SEAL_SEAL);  // nothing added
  EXPECT_EQ(::fallocate(client_view.get(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, kPage4K),
            0);
  EXPECT_EQ(::ftruncate(client_view.get(), 0), 0);
  EXPECT_EQ(backing->size(), 4 * kPage4K);  // the view stays; vfiod never reads it
}

// A tmpfs file opened by path (not a memfd), as drivers make them under /dev/shm.
TEST(ClientFdTest, TakesATmpfsFileOpenedByPath) {
  UniqueFd fd(::open("/dev/shm", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600));
  struct statfs fs {};
  ASSERT_TRUE(fd && ::fstatfs(fd.get(), &fs) == 0 && fs.f_type == TMPFS_MAGIC)
      << "/dev/shm is not a tmpfs";
  ASSERT_EQ(::ftruncate(fd.get(), 2 * kPage4K), 0);
  auto backing = AdoptClientFd(std::move(fd), kPage4K, kPage4K);
  ASSERT_TRUE(backing) << backing.error().message();
  EXPECT_EQ(backing->size(), kPage4K);
}

TEST(ClientFdTest, RefusesAPipe) {
  int ends[2];
  ASSERT_EQ(::pipe2(ends, O_CLOEXEC), 0);
  UniqueFd read_end(ends[0]);
  const Error error = ExpectRefused(UniqueFd(ends[1]), 0, kPage4K, EINVAL);
  EXPECT_THAT(error.detail, HasSubstr("regular file"));
}

TEST(ClientFdTest, RefusesAFileOnAnotherFileSystem) {
  UniqueFd fd(::open("/proc/self/exe", O_RDONLY | O_CLOEXEC));
  ASSERT_TRUE(fd.valid());
  struct statfs fs {};
  ASSERT_EQ(::fstatfs(fd.get(), &fs), 0);
  if (fs.f_type == TMPFS_MAGIC) {
    GTEST_SKIP() << "the test binary itself lives on tmpfs";
  }
  // Opened read-only, so reopen read-write to reach the file-system check.
  UniqueFd rw(::open(("/proc/self/fd/" + std::to_string(fd.get())).c_str(), O_RDWR | O_CLOEXEC));
  if (!rw.valid()) {
    ExpectRefused(std::move(fd), 0, kPage4K, EINVAL);
    return;
  }
  const Error error = ExpectRefused(std::move(rw), 0, kPage4K, EINVAL);
  EXPECT_THAT(error.detail, HasSubstr("not a memfd or hugetlbfs"));
}

TEST(ClientFdTest, RefusesAReadOnlyFd) {
  UniqueFd fd = MakeMemfd(kPage4K);
  UniqueFd read_only(
      ::open(("/proc/self/fd/" + std::to_string(fd.get())).c_str(), O_RDONLY | O_CLOEXEC));
  ASSERT_TRUE(read_only.valid());
  const Error error = ExpectRefused(std::move(read_only), 0, kPage4K, EINVAL);
  EXPECT_THAT(error.detail, HasSubstr("read-write"));
}

TEST(ClientFdTest, RefusesARangePastTheEnd) {
  const Error error = ExpectRefused(MakeMemfd(4 * kPage4K), 2 * kPage4K, 3 * kPage4K, EINVAL);
  EXPECT_THAT(error.detail, HasSubstr("past the end"));
}

TEST(ClientFdTest, RefusesAnOffsetThatWouldWrap) {
  ExpectRefused(MakeMemfd(4 * kPage4K), ~uint64_t{0} & ~(kPage4K - 1), 2 * kPage4K, EINVAL);
}

TEST(ClientFdTest, RefusesMisalignedOffsetAndLength) {
  ExpectRefused(MakeMemfd(4 * kPage4K), 100, kPage4K, EINVAL);
  ExpectRefused(MakeMemfd(4 * kPage4K), 0, kPage4K + 1, EINVAL);
  ExpectRefused(MakeMemfd(4 * kPage4K), 0, 0, EINVAL);
}

TEST(ClientFdTest, AdoptingAndDroppingLeaksNothing) {
  const int fds = CountOpenFds();
  {
    auto backing = AdoptClientFd(MakeMemfd(4 * kPage4K), 0, 4 * kPage4K);
    ASSERT_TRUE(backing);
  }
  EXPECT_EQ(CountOpenFds(), fds);
}

}  // namespace
}  // namespace vfiod::dma
