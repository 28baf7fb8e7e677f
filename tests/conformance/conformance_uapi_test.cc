// The binary uAPI as the kernel lays it out: argsz growth, the capability
// chain's order and offsets, FLAG_VADDR, and lifetimes seen through fds.
#include <linux/vfio.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <vector>

#include "conformance_fixture.h"
#include "kernel/cap_chain.h"

namespace vfiod::conformance {
namespace {

TEST_F(Attached, IommuInfoArgszGrowsThenTheChainFollows) {
  std::vector<std::byte> buf(sizeof(vfio_iommu_type1_info));
  auto* info = reinterpret_cast<vfio_iommu_type1_info*>(buf.data());
  info->argsz = sizeof *info;
  ASSERT_TRUE(k_.ioctl(container_.get(), VFIO_IOMMU_GET_INFO, buf.data()));
  EXPECT_TRUE(info->flags & VFIO_IOMMU_INFO_CAPS);
  EXPECT_EQ(info->cap_offset, 0u);
  uint32_t wanted = info->argsz;
  ASSERT_GT(wanted, sizeof *info);

  buf.assign(wanted, std::byte{0});
  info = reinterpret_cast<vfio_iommu_type1_info*>(buf.data());
  info->argsz = wanted;
  ASSERT_TRUE(k_.ioctl(container_.get(), VFIO_IOMMU_GET_INFO, buf.data()));
  EXPECT_EQ(info->cap_offset, sizeof *info);
  std::vector<std::pair<uint16_t, uint32_t>> caps;  // id, offset
  ASSERT_TRUE(kernel::WalkCapChain(buf, info->cap_offset, [&](const kernel::CapView& c) {
    caps.emplace_back(c.id, c.offset);
    return Result<void>();
  }));
  // The order (migration, DMA_AVAIL, IOVA ranges) is the same on 6.1 and
  // 7.3. 6.1 packs the capabilities without padding; 7.3 pads each to 8
  // bytes, which moves the 12-byte DMA_AVAIL's successor by 4 (the test bed
  // has no kernel between the two: the rule keys on "newer than 6.1").
  const bool padded = target_.Release() > std::pair{6, 1};
  auto size8 = [padded](uint32_t size) { return padded ? (size + 7) / 8 * 8 : size; };
  const uint32_t kBase = sizeof(vfio_iommu_type1_info);
  const uint32_t kMig = size8(sizeof(vfio_iommu_type1_info_cap_migration));
  const uint32_t kAvail = size8(sizeof(vfio_iommu_type1_info_dma_avail));
  EXPECT_EQ(caps, (std::vector<std::pair<uint16_t, uint32_t>>{
                      {VFIO_IOMMU_TYPE1_INFO_CAP_MIGRATION, kBase},
                      {VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL, kBase + kMig},
                      {VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE, kBase + kMig + kAvail}}));
  EXPECT_EQ(wanted, kBase + kMig + kAvail + sizeof(vfio_iommu_type1_info_cap_iova_range) +
                        2 * sizeof(vfio_iova_range));
}

TEST_F(Attached, UnmapAllNeedsZeroIovaAndSize) {
  vfio_iommu_type1_dma_unmap u{};
  u.argsz = sizeof u;
  u.flags = VFIO_DMA_UNMAP_FLAG_ALL;
  u.iova = 0x100000;
  EXPECT_EQ(Errno(k_.ioctl(container_.get(), VFIO_IOMMU_UNMAP_DMA, &u)), EINVAL);
  u.iova = 0;
  u.size = kPage;
  EXPECT_EQ(Errno(k_.ioctl(container_.get(), VFIO_IOMMU_UNMAP_DMA, &u)), EINVAL);
}

TEST_F(Attached, UpdateVaddrInvalidatesThenRestores) {
  Buffer a(kPage);
  Buffer b(kPage);
  ASSERT_TRUE(a.ok() && b.ok());
  ASSERT_TRUE(Map(a.vaddr(), 0x100000, kPage));
  vfio_iommu_type1_dma_unmap u{};
  u.argsz = sizeof u;
  u.flags = VFIO_DMA_UNMAP_FLAG_VADDR;
  u.iova = 0x100000;
  u.size = kPage;
  ASSERT_TRUE(k_.ioctl(container_.get(), VFIO_IOMMU_UNMAP_DMA, &u));
  EXPECT_EQ(u.size, kPage);
  vfio_iommu_type1_dma_map m{};
  m.argsz = sizeof m;
  m.flags = VFIO_DMA_MAP_FLAG_VADDR;
  m.vaddr = b.vaddr();
  m.iova = 0x100000;
  m.size = kPage;
  ASSERT_TRUE(k_.ioctl(container_.get(), VFIO_IOMMU_MAP_DMA, &m));
  EXPECT_EQ(Errno(k_.ioctl(container_.get(), VFIO_IOMMU_MAP_DMA, &m)), EINVAL);  // valid again
  m.iova = 0x200000;
  EXPECT_EQ(Errno(k_.ioctl(container_.get(), VFIO_IOMMU_MAP_DMA, &m)), ENOENT);  // no mapping
  EXPECT_EQ(Unmap(0x100000, kPage).value_or(0), kPage);
}

TEST_F(Conformance, MapBeforeSetIommuIsEinval) {
  Buffer buf(kPage);
  ASSERT_TRUE(buf.ok());
  KernelFd c = OpenContainer();
  KernelFd g = OpenGroup(device());
  ASSERT_TRUE(kernel::SetContainer(k_, g.get(), c.get()));
  EXPECT_EQ(Errno(kernel::MapDma(k_, c.get(), kernel::DmaMap{buf.vaddr(), 0x100000, kPage})),
            EINVAL);
}

TEST_F(Attached, ClosedContainerLivesOnWhileTheGroupHoldsIt) {
  Buffer buf(kPage);
  ASSERT_TRUE(buf.ok());
  ASSERT_TRUE(Map(buf.vaddr(), 0x100000, kPage));
  container_.reset();
  EXPECT_TRUE(kernel::GetGroupStatus(k_, group_.get())->container_set);
  auto dev = kernel::GetDeviceFd(k_, group_.get(), device());  // the IOMMU is still set
  ASSERT_TRUE(dev) << dev.error().message();
  KernelFd d(&k_, *dev);
  EXPECT_TRUE(kernel::GetDeviceInfo(k_, d.get()));
}

class DeviceFd : public DeviceOpen {};

TEST_F(DeviceFd, KeepsTheGroupBusy) {
  EXPECT_EQ(Errno(kernel::UnsetContainer(k_, group_.get())), EBUSY);
  group_.reset();  // the device fd still holds the group file
  EXPECT_EQ(Errno(k_.open(GroupPath(device()), O_RDWR)), EBUSY);
  dev_.reset();
  KernelFd again = OpenGroup(device());
  ASSERT_TRUE(again.valid());
  EXPECT_FALSE(kernel::GetGroupStatus(k_, again.get())->container_set);
}

TEST_F(DeviceFd, IrqEventfdsEnableAndDisable) {
  int efd = ::eventfd(0, EFD_CLOEXEC);
  ASSERT_GE(efd, 0);
  int fds[] = {efd};
  EXPECT_EQ(Errno(kernel::DisableIrqs(k_, dev_.get(), kernel::kPciMsiIrqIndex)), EINVAL);
  ASSERT_TRUE(kernel::SetIrqEventfds(k_, dev_.get(), kernel::kPciMsiIrqIndex, 0, fds));
  EXPECT_EQ(Errno(kernel::SetIrqEventfds(k_, dev_.get(), kernel::kPciIntxIrqIndex, 0, fds)),
            EINVAL);  // one interrupt type at a time
  ASSERT_TRUE(kernel::DisableIrqs(k_, dev_.get(), kernel::kPciMsiIrqIndex));
  EXPECT_EQ(Errno(kernel::DisableIrqs(k_, dev_.get(), kernel::kPciMsiIrqIndex)), EINVAL);
  ASSERT_TRUE(kernel::SetIrqEventfds(k_, dev_.get(), kernel::kPciIntxIrqIndex, 0, fds));
  ASSERT_TRUE(kernel::DisableIrqs(k_, dev_.get(), kernel::kPciIntxIrqIndex));
  int two[] = {efd, efd};
  EXPECT_EQ(Errno(kernel::SetIrqEventfds(k_, dev_.get(), kernel::kPciMsiIrqIndex, 0, two)),
            EINVAL);  // edu has one MSI vector
  ::close(efd);
}

TEST_F(DeviceFd, IrqUnmaskOnlyForEnabledIntx) {
  int efd = ::eventfd(0, EFD_CLOEXEC);
  ASSERT_GE(efd, 0);
  int fds[] = {efd};
  const uint32_t intx = kernel::kPciIntxIrqIndex;
  EXPECT_EQ(Errno(kernel::UnmaskIrq(k_, dev_.get(), intx, 0)), EINVAL);  // not enabled
  ASSERT_TRUE(kernel::SetIrqEventfds(k_, dev_.get(), kernel::kPciMsiIrqIndex, 0, fds));
  EXPECT_EQ(Errno(kernel::UnmaskIrq(k_, dev_.get(), kernel::kPciMsiIrqIndex, 0)), ENOTTY);
  ASSERT_TRUE(kernel::DisableIrqs(k_, dev_.get(), kernel::kPciMsiIrqIndex));
  ASSERT_TRUE(kernel::SetIrqEventfds(k_, dev_.get(), intx, 0, fds));
  EXPECT_TRUE(kernel::UnmaskIrq(k_, dev_.get(), intx, 0));
  EXPECT_EQ(Errno(kernel::UnmaskIrq(k_, dev_.get(), intx, 1)), EINVAL);  // INTx has one vector
  ASSERT_TRUE(kernel::DisableIrqs(k_, dev_.get(), intx));
  ::close(efd);
}

TEST_F(DeviceFd, RegionInfoWithoutCapsKeepsArgsz) {
  vfio_region_info r{};
  r.argsz = sizeof r + 64;  // room to spare is fine
  r.index = kernel::kPciConfigRegionIndex;
  ASSERT_TRUE(k_.ioctl(dev_.get(), VFIO_DEVICE_GET_REGION_INFO, &r));
  EXPECT_EQ(r.argsz, sizeof r + 64);
  EXPECT_EQ(r.flags & VFIO_REGION_INFO_FLAG_CAPS, 0u);
  r.argsz = 8;
  EXPECT_EQ(Errno(k_.ioctl(dev_.get(), VFIO_DEVICE_GET_REGION_INFO, &r)), EINVAL);
}

}  // namespace
}  // namespace vfiod::conformance
