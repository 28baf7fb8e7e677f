// The vfio-pci device: fd, info, regions, config space, IRQs.
#include "conformance_fixture.h"

namespace vfiod::conformance {
namespace {

class Device : public DeviceOpen {};

TEST_F(Conformance, DeviceFdNeedsAnIommuAndAKnownName) {
  KernelFd c = OpenContainer();
  KernelFd g = OpenGroup(device());
  ASSERT_TRUE(kernel::SetContainer(k_, g.get(), c.get()));
  EXPECT_EQ(Errno(kernel::GetDeviceFd(k_, g.get(), device())), EINVAL);  // no IOMMU yet
  ASSERT_TRUE(kernel::SetIommuType1v2(k_, c.get()));
  EXPECT_EQ(Errno(kernel::GetDeviceFd(k_, g.get(), "0000:ff:1f.7")), ENODEV);
}

TEST_F(Device, InfoIsPciWithTheStandardRegionsAndIrqs) {
  auto info = kernel::GetDeviceInfo(k_, dev_.get());
  ASSERT_TRUE(info) << info.error().message();
  EXPECT_TRUE(info->is_pci());
  EXPECT_GE(info->num_regions, kernel::kPciNumRegions);
  EXPECT_EQ(info->num_irqs, kernel::kPciNumIrqs);
}

TEST_F(Device, ConfigRegionAndBar0) {
  auto cfg = kernel::GetRegionInfo(k_, dev_.get(), kernel::kPciConfigRegionIndex);
  ASSERT_TRUE(cfg) << cfg.error().message();
  EXPECT_GE(cfg->size, 256u);
  EXPECT_TRUE(cfg->readable() && cfg->writable());
  auto bar0 = kernel::GetRegionInfo(k_, dev_.get(), kernel::kPciBar0RegionIndex);
  ASSERT_TRUE(bar0) << bar0.error().message();
  EXPECT_EQ(bar0->size, 1u << 20);
  EXPECT_TRUE(bar0->mmappable());
  EXPECT_EQ(Errno(kernel::GetRegionInfo(k_, dev_.get(), 1000)), EINVAL);
}

TEST_F(Device, ConfigReadGivesTheIds) {
  auto cfg = kernel::GetRegionInfo(k_, dev_.get(), kernel::kPciConfigRegionIndex);
  ASSERT_TRUE(cfg);
  uint16_t ids[2] = {};
  auto n = k_.pread(dev_.get(), ids, sizeof ids, static_cast<off_t>(cfg->offset));
  ASSERT_TRUE(n) << n.error().message();
  EXPECT_EQ(*n, sizeof ids);
  EXPECT_EQ(ids[0], 0x1234);  // edu
  EXPECT_EQ(ids[1], 0x11e8);
}

TEST_F(Device, BarMapsAndCommandRegisterIsWritable) {
  auto cfg = kernel::GetRegionInfo(k_, dev_.get(), kernel::kPciConfigRegionIndex);
  ASSERT_TRUE(cfg);
  auto off = static_cast<off_t>(cfg->offset + 4);
  uint16_t cmd = 0;
  ASSERT_TRUE(k_.pread(dev_.get(), &cmd, 2, off));
  uint16_t want = cmd | 0x0006;  // memory space + bus master
  ASSERT_TRUE(k_.pwrite(dev_.get(), &want, 2, off));
  uint16_t got = 0;
  ASSERT_TRUE(k_.pread(dev_.get(), &got, 2, off));
  EXPECT_EQ(got & 0x0006, 0x0006);
  auto bar0 = kernel::GetRegionInfo(k_, dev_.get(), kernel::kPciBar0RegionIndex);
  ASSERT_TRUE(bar0);
  auto p = k_.mmap(nullptr, bar0->size, PROT_READ | PROT_WRITE, MAP_SHARED, dev_.get(),
                   static_cast<off_t>(bar0->offset));
  ASSERT_TRUE(p) << p.error().message();
  EXPECT_TRUE(k_.munmap(*p, bar0->size));
}

TEST_F(Device, MmapOfTheBarMapsForPeerDma) {
  auto bar0 = kernel::GetRegionInfo(k_, dev_.get(), kernel::kPciBar0RegionIndex);
  ASSERT_TRUE(bar0);
  auto p = k_.mmap(nullptr, bar0->size, PROT_READ | PROT_WRITE, MAP_SHARED, dev_.get(),
                   static_cast<off_t>(bar0->offset));
  ASSERT_TRUE(p) << p.error().message();
  uint64_t vaddr = reinterpret_cast<uint64_t>(*p);
  auto map = kernel::MapDma(k_, container_.get(), kernel::DmaMap{vaddr, 0x8000000, bar0->size});
  EXPECT_TRUE(map) << map.error().message();
  EXPECT_EQ(kernel::UnmapDma(k_, container_.get(), 0x8000000, bar0->size).value_or(0), bar0->size);
  EXPECT_TRUE(k_.munmap(*p, bar0->size));
}

TEST_F(Device, IrqInfo) {
  auto intx = kernel::GetIrqInfo(k_, dev_.get(), kernel::kPciIntxIrqIndex);
  ASSERT_TRUE(intx) << intx.error().message();
  EXPECT_EQ(intx->count, 1u);
  EXPECT_TRUE(intx->eventfd());
  EXPECT_TRUE(intx->maskable());
  auto msi = kernel::GetIrqInfo(k_, dev_.get(), kernel::kPciMsiIrqIndex);
  ASSERT_TRUE(msi) << msi.error().message();
  EXPECT_EQ(msi->count, 1u);
  EXPECT_TRUE(msi->eventfd());
  auto msix = kernel::GetIrqInfo(k_, dev_.get(), kernel::kPciMsixIrqIndex);
  ASSERT_TRUE(msix);
  EXPECT_EQ(msix->count, 0u);
}

// The device under test (edu) sits on the root bus: no bridge can reset it,
// so the hot reset ioctls answer ENODEV before looking at the group fds.
TEST_F(Device, NoHotResetOnTheRootBus) {
  EXPECT_EQ(Errno(kernel::GetHotResetInfo(k_, dev_.get())), ENODEV);
  const int groups[] = {group_.get()};
  EXPECT_EQ(Errno(kernel::HotReset(k_, dev_.get(), groups)), ENODEV);
}

// VFIO_DEVICE_RESET works exactly when the device reports FLAGS_RESET.
TEST_F(Device, FunctionResetFollowsTheResetFlag) {
  auto info = kernel::GetDeviceInfo(k_, dev_.get());
  ASSERT_TRUE(info) << info.error().message();
  EXPECT_EQ(Errno(kernel::ResetDevice(k_, dev_.get())), info->can_reset() ? 0 : EINVAL);
}

}  // namespace
}  // namespace vfiod::conformance
