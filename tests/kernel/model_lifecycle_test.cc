// Containers, groups and their lifetimes in the model (VFIO core rules).
#include <gtest/gtest.h>
#include <linux/vfio.h>

#include "model_fixture.h"

namespace vfiod::kernel::testing {
namespace {

class Lifecycle : public ::testing::Test {
 protected:
  KernelFd Open(const std::string& path) {
    auto fd = k_.open(path, O_RDWR);
    EXPECT_TRUE(fd) << fd.error().message();
    return KernelFd(&k_, fd.value_or(-1));
  }

  ModelKernel k_{VmLikeTopology()};
};

TEST_F(Lifecycle, ApiVersionAndExtensions) {
  KernelFd c = Open("/dev/vfio/vfio");
  EXPECT_EQ(GetApiVersion(k_, c.get()).value(), 0);
  EXPECT_TRUE(CheckExtension(k_, c.get(), Extension::kType1v2).value());
  EXPECT_TRUE(CheckExtension(k_, c.get(), Extension::kUnmapAll).value());
  EXPECT_FALSE(CheckExtension(k_, c.get(), Extension::kUpdateVaddr).value());
  EXPECT_FALSE(CheckExtension(k_, c.get(), Extension::kMmioNoPin).value());
  KernelFd g = Open(GroupPath(kEduGroup));
  ASSERT_TRUE(SetContainer(k_, g.get(), c.get()));
  ASSERT_TRUE(SetIommuType1v2(k_, c.get()));
  EXPECT_TRUE(CheckExtension(k_, c.get(), Extension::kUpdateVaddr).value());
}

TEST_F(Lifecycle, UnknownGroupIsEnoentAndSecondOpenIsEbusy) {
  EXPECT_EQ(Errno(k_.open("/dev/vfio/99", O_RDWR)), ENOENT);
  EXPECT_EQ(Errno(k_.open("/dev/vfio/x3", O_RDWR)), ENOENT);
  {
    KernelFd g = Open(GroupPath(kEduGroup));
    EXPECT_EQ(Errno(k_.open(GroupPath(kEduGroup), O_RDWR)), EBUSY);
  }
  KernelFd again = Open(GroupPath(kEduGroup));
  EXPECT_TRUE(again.valid());
  EXPECT_EQ(k_.OpenFdCount(), 1u);
}

TEST_F(Lifecycle, NonViableGroupIsEperm) {
  KernelFd c = Open("/dev/vfio/vfio");
  KernelFd g = Open(GroupPath(kIch9Group));
  GroupStatus st = GetGroupStatus(k_, g.get()).value();
  EXPECT_FALSE(st.viable);
  EXPECT_FALSE(st.container_set);
  EXPECT_EQ(Errno(SetContainer(k_, g.get(), c.get())), EPERM);
}

TEST_F(Lifecycle, SetIommuNeedsAGroupAndOnlyOnce) {
  KernelFd c = Open("/dev/vfio/vfio");
  EXPECT_EQ(Errno(SetIommuType1v2(k_, c.get())), EINVAL);
  KernelFd g = Open(GroupPath(kEduGroup));
  ASSERT_TRUE(SetContainer(k_, g.get(), c.get()));
  EXPECT_EQ(Errno(k_.ioctl_value(c.get(), VFIO_SET_IOMMU, 12345)), ENODEV);
  ASSERT_TRUE(SetIommuType1v2(k_, c.get()));
  EXPECT_EQ(Errno(SetIommuType1v2(k_, c.get())), EINVAL);
  GroupStatus st = GetGroupStatus(k_, g.get()).value();
  EXPECT_TRUE(st.viable && st.container_set);
}

TEST_F(Lifecycle, GroupInTwoContainersIsEinvalAndBadFdsAreRefused) {
  KernelFd c1 = Open("/dev/vfio/vfio");
  KernelFd c2 = Open("/dev/vfio/vfio");
  KernelFd g = Open(GroupPath(kEduGroup));
  ASSERT_TRUE(SetContainer(k_, g.get(), c1.get()));
  EXPECT_EQ(Errno(SetContainer(k_, g.get(), c2.get())), EINVAL);
  KernelFd g2 = Open(GroupPath(kIvshmemGroup));
  EXPECT_EQ(Errno(SetContainer(k_, g2.get(), g.get())), EINVAL);  // a group is no container
  int closed = ::dup(0);
  ::close(closed);
  EXPECT_EQ(Errno(SetContainer(k_, g2.get(), closed)), EBADF);
}

TEST_F(Lifecycle, MapBeforeSetIommuIsEinval) {
  KernelFd c = Open("/dev/vfio/vfio");
  Buffer buf(kPage);
  EXPECT_EQ(Errno(MapDma(k_, c.get(), DmaMap{buf.vaddr(), 0x100000, kPage})), EINVAL);
}

TEST_F(Lifecycle, ClosingTheContainerKeepsItWhileAGroupIsAttached) {
  Buffer buf(kPage);
  KernelFd g = Open(GroupPath(kEduGroup));
  {
    KernelFd c = Open("/dev/vfio/vfio");
    ASSERT_TRUE(SetContainer(k_, g.get(), c.get()));
    ASSERT_TRUE(SetIommuType1v2(k_, c.get()));
    ASSERT_TRUE(MapDma(k_, c.get(), DmaMap{buf.vaddr(), 0x100000, kPage}));
  }
  EXPECT_EQ(k_.LockedBytes(), kPage);  // still pinned: the group holds the container
  EXPECT_TRUE(GetGroupStatus(k_, g.get())->container_set);
  KernelFd dev(&k_, GetDeviceFd(k_, g.get(), kEdu).value());
  EXPECT_TRUE(dev.valid());
  dev.reset();
  g.reset();
  EXPECT_EQ(k_.LockedBytes(), 0u);  // last group gone: IOMMU released, pages unpinned
  EXPECT_EQ(k_.OpenFdCount(), 0u);
}

TEST_F(Lifecycle, LastGroupLeavingDropsTheIommu) {
  Buffer buf(kPage);
  KernelFd c = Open("/dev/vfio/vfio");
  KernelFd g = Open(GroupPath(kEduGroup));
  KernelFd g2 = Open(GroupPath(kIvshmemGroup));
  ASSERT_TRUE(SetContainer(k_, g.get(), c.get()));
  ASSERT_TRUE(SetIommuType1v2(k_, c.get()));
  ASSERT_TRUE(SetContainer(k_, g2.get(), c.get()));  // joins the existing IOMMU
  ASSERT_TRUE(MapDma(k_, c.get(), DmaMap{buf.vaddr(), 0x100000, kPage}));
  ASSERT_TRUE(UnsetContainer(k_, g.get()));
  EXPECT_EQ(k_.Entries(c.get())->size(), 1u);  // g2 still holds it
  ASSERT_TRUE(UnsetContainer(k_, g2.get()));
  EXPECT_EQ(k_.Entries(c.get())->size(), 0u);
  EXPECT_EQ(k_.LockedBytes(), 0u);
  EXPECT_EQ(Errno(MapDma(k_, c.get(), DmaMap{buf.vaddr(), 0x100000, kPage})), EINVAL);
  EXPECT_EQ(Errno(UnsetContainer(k_, g.get())), EINVAL);  // nothing to unset
  ASSERT_TRUE(SetContainer(k_, g.get(), c.get()));        // and it can start over
  EXPECT_TRUE(SetIommuType1v2(k_, c.get()));
}

TEST_F(Lifecycle, DeviceFdRules) {
  KernelFd c = Open("/dev/vfio/vfio");
  KernelFd g = Open(GroupPath(kEduGroup));
  EXPECT_EQ(Errno(GetDeviceFd(k_, g.get(), kEdu)), EINVAL);  // no container
  ASSERT_TRUE(SetContainer(k_, g.get(), c.get()));
  EXPECT_EQ(Errno(GetDeviceFd(k_, g.get(), kEdu)), EINVAL);  // no IOMMU
  ASSERT_TRUE(SetIommuType1v2(k_, c.get()));
  EXPECT_EQ(Errno(GetDeviceFd(k_, g.get(), "0000:00:04.0")), ENODEV);  // other group
  KernelFd d1(&k_, GetDeviceFd(k_, g.get(), kEdu).value());
  KernelFd d2(&k_, GetDeviceFd(k_, g.get(), kEdu).value());  // opens may repeat
  EXPECT_NE(d1.get(), d2.get());
  EXPECT_EQ(Errno(UnsetContainer(k_, g.get())), EBUSY);
  // A device fd keeps the group open after its fd closes, as in Linux.
  g.reset();
  EXPECT_EQ(Errno(k_.open(GroupPath(kEduGroup), O_RDWR)), EBUSY);
  d1.reset();
  d2.reset();
  KernelFd reopened = Open(GroupPath(kEduGroup));
  EXPECT_FALSE(GetGroupStatus(k_, reopened.get())->container_set);
}

TEST_F(Lifecycle, UnknownIoctlsAndForeignFdsPassThrough) {
  KernelFd g = Open(GroupPath(kEduGroup));
  EXPECT_EQ(Errno(k_.ioctl_value(g.get(), VFIO_GET_API_VERSION, 0)), ENOTTY);
  EXPECT_EQ(k_.IoctlCount("VFIO_GET_API_VERSION"), 1u);
  auto plain = k_.open("/dev/null", O_RDONLY);  // outside /dev/vfio: the real open
  ASSERT_TRUE(plain);
  EXPECT_EQ(Errno(k_.ioctl_value(*plain, VFIO_GET_API_VERSION, 0)), ENOTTY);  // real answer
  k_.close(*plain);
  EXPECT_EQ(k_.OpenFdCount(), 1u);
}

}  // namespace
}  // namespace vfiod::kernel::testing
