// LinuxKernel: real syscalls, O_CLOEXEC added, errors named after the call.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/vfio.h>
#include <sys/mman.h>
#include <unistd.h>

#include "kernel/kernel.h"

namespace vfiod::kernel {
namespace {

TEST(LinuxKernel, OpenAddsCloexecAndNamesThePath) {
  auto k = MakeLinuxKernel();
  EXPECT_EQ(k->name(), "linux");
  auto fd = k->open("/dev/null", O_RDWR);
  ASSERT_TRUE(fd) << fd.error().message();
  EXPECT_TRUE(::fcntl(*fd, F_GETFD) & FD_CLOEXEC);
  auto missing = k->open("/nonexistent/vfio", O_RDWR);
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, ENOENT);
  EXPECT_EQ(missing.error().op, "open /nonexistent/vfio");
  // An ioctl error carries the request's name.
  auto api = k->ioctl_value(*fd, VFIO_GET_API_VERSION, 0);
  ASSERT_FALSE(api);
  EXPECT_EQ(api.error().code, ENOTTY);
  EXPECT_EQ(api.error().op, "VFIO_GET_API_VERSION");
  vfio_iommu_type1_dma_map m{};
  EXPECT_EQ(k->ioctl(*fd, VFIO_IOMMU_MAP_DMA, &m).error().op, "VFIO_IOMMU_MAP_DMA");
  k->close(*fd);
  EXPECT_EQ(::fcntl(*fd, F_GETFD), -1);  // really closed
}

TEST(LinuxKernel, PreadPwriteMmapMunmap) {
  auto k = MakeLinuxKernel();
  int fd = ::memfd_create("linux-kernel-test", MFD_CLOEXEC);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::ftruncate(fd, 4096), 0);
  const char msg[] = "vfiod";
  EXPECT_EQ(k->pwrite(fd, msg, sizeof msg, 100).value(), sizeof msg);
  char back[sizeof msg] = {};
  EXPECT_EQ(k->pread(fd, back, sizeof back, 100).value(), sizeof msg);
  EXPECT_STREQ(back, msg);
  EXPECT_EQ(k->pread(fd, back, sizeof back, 4094).value(), 2u);  // short, not an error
  void* p = k->mmap(nullptr, 4096, PROT_READ, MAP_SHARED, fd, 0).value();
  EXPECT_STREQ(static_cast<char*>(p) + 100, msg);
  EXPECT_TRUE(k->munmap(p, 4096));
  EXPECT_EQ(k->mmap(nullptr, 4096, PROT_READ, MAP_SHARED, -1, 0).error().code, EBADF);
  EXPECT_EQ(k->pread(-1, back, 1, 0).error().op, "pread");
  k->close(fd);
}

TEST(LinuxKernelDeathTest, DoubleCloseAborts) {
  auto k = MakeLinuxKernel();
  int fd = k->open("/dev/null", O_RDONLY).value();
  k->close(fd);
  EXPECT_DEATH(k->close(fd), "EBADF");
}

}  // namespace
}  // namespace vfiod::kernel
