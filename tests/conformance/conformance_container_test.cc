// Containers and groups: API version, extensions, attach rules, IOMMU info.
#include "conformance_fixture.h"

namespace vfiod::conformance {
namespace {

using kernel::Extension;

TEST_F(Conformance, ApiVersionIsZero) {
  KernelFd c = OpenContainer();
  EXPECT_EQ(kernel::GetApiVersion(k_, c.get()).value_or(-1), 0);
}

TEST_F(Conformance, ExtensionsBeforeAndAfterSetIommu) {
  KernelFd c = OpenContainer();
  EXPECT_EQ(kernel::CheckExtension(k_, c.get(), Extension::kType1v2).value_or(false), true);
  EXPECT_EQ(kernel::CheckExtension(k_, c.get(), Extension::kUnmapAll).value_or(false), true);
  EXPECT_EQ(kernel::CheckExtension(k_, c.get(), Extension::kUpdateVaddr).value_or(true), false);
  KernelFd g = OpenGroup(device());
  ASSERT_TRUE(kernel::SetContainer(k_, g.get(), c.get()));
  ASSERT_TRUE(kernel::SetIommuType1v2(k_, c.get()));
  EXPECT_EQ(kernel::CheckExtension(k_, c.get(), Extension::kUpdateVaddr).value_or(false), true);
  EXPECT_EQ(kernel::CheckExtension(k_, c.get(), Extension::kType1v2).value_or(false), true);
}

TEST_F(Conformance, SetIommuBeforeAGroupIsEinval) {
  KernelFd c = OpenContainer();
  EXPECT_EQ(Errno(kernel::SetIommuType1v2(k_, c.get())), EINVAL);
}

TEST_F(Conformance, SetIommuTwiceIsEinval) {
  KernelFd c = OpenContainer();
  KernelFd g = OpenGroup(device());
  ASSERT_TRUE(kernel::SetContainer(k_, g.get(), c.get()));
  ASSERT_TRUE(kernel::SetIommuType1v2(k_, c.get()));
  EXPECT_EQ(Errno(kernel::SetIommuType1v2(k_, c.get())), EINVAL);
}

TEST_F(Conformance, NonViableGroupIsEperm) {
  KernelFd c = OpenContainer();
  KernelFd g = OpenGroup(nonviable());
  auto status = kernel::GetGroupStatus(k_, g.get());
  ASSERT_TRUE(status) << status.error().message();
  EXPECT_FALSE(status->viable);
  EXPECT_FALSE(status->container_set);
  EXPECT_EQ(Errno(kernel::SetContainer(k_, g.get(), c.get())), EPERM);
}

TEST_F(Conformance, GroupOpensOnceAndJoinsOneContainer) {
  KernelFd c1 = OpenContainer();
  KernelFd c2 = OpenContainer();
  KernelFd g = OpenGroup(device());
  EXPECT_EQ(Errno(k_.open(GroupPath(device()), O_RDWR)), EBUSY);
  auto status = kernel::GetGroupStatus(k_, g.get());
  ASSERT_TRUE(status);
  EXPECT_TRUE(status->viable);
  EXPECT_FALSE(status->container_set);
  ASSERT_TRUE(kernel::SetContainer(k_, g.get(), c1.get()));
  EXPECT_TRUE(kernel::GetGroupStatus(k_, g.get())->container_set);
  // Linux answers EINVAL (group->container is set), not EBUSY.
  EXPECT_EQ(Errno(kernel::SetContainer(k_, g.get(), c2.get())), EINVAL);
  ASSERT_TRUE(kernel::UnsetContainer(k_, g.get()));
  EXPECT_TRUE(kernel::SetContainer(k_, g.get(), c2.get()));
}

TEST_F(Attached, IommuInfoHasTheRangesPageSizesAndCapabilities) {
  auto info = kernel::GetIommuInfo(k_, container_.get());
  ASSERT_TRUE(info) << info.error().message();
  EXPECT_EQ(info->iova_pgsizes, 0x40201000u);
  EXPECT_EQ(info->iova_ranges,
            (std::vector<kernel::IovaRange>{{0, 0xfedfffff}, {0xfef00000, 0x7fffffffff}}));
  EXPECT_EQ(info->dma_avail, 65535u);
  EXPECT_TRUE(info->migration.has_value());
}

TEST_F(Attached, DmaAvailCountsMappings) {
  Buffer buf(2 * kPage);
  ASSERT_TRUE(buf.ok());
  uint32_t before = DmaAvail();
  ASSERT_TRUE(Map(buf.vaddr(), 0x100000, kPage));
  EXPECT_EQ(DmaAvail(), before - 1);
  ASSERT_TRUE(Map(buf.vaddr() + kPage, 0x200000, kPage));
  EXPECT_EQ(DmaAvail(), before - 2);
  ASSERT_TRUE(Unmap(0x100000, kPage));
  EXPECT_EQ(DmaAvail(), before - 1);
}

TEST_F(Conformance, ClosingTheGroupReleasesTheContainer) {
  Buffer buf(kPage);
  ASSERT_TRUE(buf.ok());
  KernelFd c = OpenContainer();
  {
    KernelFd g = OpenGroup(device());
    ASSERT_TRUE(kernel::SetContainer(k_, g.get(), c.get()));
    ASSERT_TRUE(kernel::SetIommuType1v2(k_, c.get()));
    ASSERT_TRUE(kernel::MapDma(k_, c.get(), kernel::DmaMap{buf.vaddr(), 0x100000, kPage}));
  }
  // The last group left: the container lost its IOMMU, so type1 ioctls are refused.
  EXPECT_EQ(Errno(kernel::MapDma(k_, c.get(), kernel::DmaMap{buf.vaddr(), 0x100000, kPage})),
            EINVAL);
  KernelFd g = OpenGroup(device());
  ASSERT_TRUE(kernel::SetContainer(k_, g.get(), c.get()));
  ASSERT_TRUE(kernel::SetIommuType1v2(k_, c.get()));
  EXPECT_EQ(kernel::GetIommuInfo(k_, c.get())->dma_avail, 65535u);  // nothing left mapped
}

}  // namespace
}  // namespace vfiod::conformance
