// vfio-pci devices in the model: info, regions, config space, mmap, IRQs.
#include <gtest/gtest.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cstring>

#include "model_fixture.h"

namespace vfiod::kernel::testing {
namespace {

using DeviceModel = ModelFixture;

uint64_t ReadEventfd(int fd) {
  uint64_t v = 0;
  return ::read(fd, &v, sizeof v) == sizeof v ? v : 0;
}

TEST_F(DeviceModel, InfoRegionsAndIrqs) {
  KernelFd dev = OpenEdu();
  DeviceInfo info = GetDeviceInfo(k_, dev.get()).value();
  EXPECT_TRUE(info.is_pci());
  EXPECT_TRUE(info.can_reset());
  EXPECT_EQ(info.num_regions, kPciNumRegions);
  EXPECT_EQ(info.num_irqs, kPciNumIrqs);
  RegionInfo bar0 = GetRegionInfo(k_, dev.get(), kPciBar0RegionIndex).value();
  EXPECT_EQ(bar0.size, 1u << 20);
  EXPECT_TRUE(bar0.readable() && bar0.writable() && bar0.mmappable());
  EXPECT_FALSE(bar0.sparse_mmap.has_value());
  RegionInfo cfg = GetRegionInfo(k_, dev.get(), kPciConfigRegionIndex).value();
  EXPECT_EQ(cfg.size, 256u);
  EXPECT_FALSE(cfg.mmappable());
  EXPECT_EQ(GetRegionInfo(k_, dev.get(), 1)->size, 0u);  // no BAR1
  EXPECT_EQ(Errno(GetRegionInfo(k_, dev.get(), kPciNumRegions)), EINVAL);
  IrqInfo intx = GetIrqInfo(k_, dev.get(), kPciIntxIrqIndex).value();
  EXPECT_EQ(intx.count, 1u);
  EXPECT_TRUE(intx.eventfd() && intx.maskable());
  EXPECT_EQ(GetIrqInfo(k_, dev.get(), kPciMsiIrqIndex)->count, 1u);
  EXPECT_EQ(GetIrqInfo(k_, dev.get(), kPciMsixIrqIndex)->count, 0u);
  EXPECT_EQ(Errno(GetIrqInfo(k_, dev.get(), kPciErrIrqIndex)), EINVAL);  // not PCIe
}

TEST_F(DeviceModel, ConfigSpaceIdsAndWritableCommand) {
  KernelFd dev = OpenEdu();
  RegionInfo cfg = GetRegionInfo(k_, dev.get(), kPciConfigRegionIndex).value();
  uint16_t ids[2] = {};
  ASSERT_EQ(k_.pread(dev.get(), ids, sizeof ids, static_cast<off_t>(cfg.offset)).value(), 4u);
  EXPECT_EQ(ids[0], 0x1234);
  EXPECT_EQ(ids[1], 0x11e8);
  uint16_t cmd = 0x0006;  // memory space + bus master
  ASSERT_TRUE(k_.pwrite(dev.get(), &cmd, 2, static_cast<off_t>(cfg.offset + 4)));
  uint16_t vendor = 0xffff;  // read-only: dropped
  ASSERT_TRUE(k_.pwrite(dev.get(), &vendor, 2, static_cast<off_t>(cfg.offset)));
  uint16_t got[3] = {};
  ASSERT_TRUE(k_.pread(dev.get(), got, 6, static_cast<off_t>(cfg.offset)));
  EXPECT_EQ(got[0], 0x1234);
  EXPECT_EQ(got[2], 0x0006);
  // A read running past the region's end is short.
  uint8_t tail[16] = {};
  EXPECT_EQ(k_.pread(dev.get(), tail, 16, static_cast<off_t>(cfg.offset + 250)).value(), 6u);
  ASSERT_TRUE(ResetDevice(k_, dev.get()));
  ASSERT_TRUE(k_.pread(dev.get(), got, 6, static_cast<off_t>(cfg.offset)));
  EXPECT_EQ(got[2], 0u);  // reset clears the command register
}

// What a user left in a BAR is gone after a function reset, through pread
// and through an mmap alike (the model's power-on state: zeros).
TEST_F(DeviceModel, FunctionResetClearsTheBars) {
  KernelFd dev = OpenEdu();
  RegionInfo bar0 = GetRegionInfo(k_, dev.get(), kPciBar0RegionIndex).value();
  void* p = k_.mmap(nullptr, bar0.size, PROT_READ | PROT_WRITE, MAP_SHARED, dev.get(),
                    static_cast<off_t>(bar0.offset))
                .value();
  const uint32_t left = 0x5ec2e7a5;
  ASSERT_TRUE(k_.pwrite(dev.get(), &left, 4, static_cast<off_t>(bar0.offset + 0x14)));
  ASSERT_TRUE(ResetDevice(k_, dev.get()));
  uint32_t seen = 1;
  ASSERT_TRUE(k_.pread(dev.get(), &seen, 4, static_cast<off_t>(bar0.offset + 0x14)));
  EXPECT_EQ(seen, 0u);
  std::memcpy(&seen, static_cast<char*>(p) + 0x14, 4);
  EXPECT_EQ(seen, 0u);
  ASSERT_TRUE(k_.munmap(p, bar0.size));
}

TEST_F(DeviceModel, BarMmapSharesMemoryWithPreadAndIsNotCharged) {
  KernelFd dev = OpenEdu();
  RegionInfo bar0 = GetRegionInfo(k_, dev.get(), kPciBar0RegionIndex).value();
  void* p = k_.mmap(nullptr, bar0.size, PROT_READ | PROT_WRITE, MAP_SHARED, dev.get(),
                    static_cast<off_t>(bar0.offset))
                .value();
  uint32_t v = 0x010000ed;
  ASSERT_TRUE(k_.pwrite(dev.get(), &v, 4, static_cast<off_t>(bar0.offset + 0x40)));
  uint32_t seen = 0;
  std::memcpy(&seen, static_cast<char*>(p) + 0x40, 4);
  EXPECT_EQ(seen, v);
  // Peer-to-peer style: mapping the BAR for DMA pins no memory.
  ASSERT_TRUE(Map(reinterpret_cast<uint64_t>(p), 0x8000000, bar0.size));
  EXPECT_EQ(k_.LockedBytes(), 0u);
  ASSERT_TRUE(k_.munmap(p, bar0.size));
  EXPECT_EQ(Errno(k_.mmap(nullptr, kPage, PROT_READ, MAP_PRIVATE, dev.get(),
                          static_cast<off_t>(bar0.offset))),
            EINVAL);  // vfio-pci wants MAP_SHARED
  RegionInfo cfg = GetRegionInfo(k_, dev.get(), kPciConfigRegionIndex).value();
  EXPECT_EQ(Errno(k_.mmap(nullptr, kPage, PROT_READ, MAP_SHARED, dev.get(),
                          static_cast<off_t>(cfg.offset))),
            EINVAL);
}

TEST_F(DeviceModel, IntxEventfdFiresOnceUntilUnmasked) {
  KernelFd dev = OpenEdu();
  int efd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  ASSERT_GE(efd, 0);
  EXPECT_FALSE(k_.TriggerIrq(dev.get(), kPciIntxIrqIndex, 0).value());  // nobody listens
  int fds[] = {efd};
  ASSERT_TRUE(SetIrqEventfds(k_, dev.get(), kPciIntxIrqIndex, 0, fds));
  EXPECT_TRUE(k_.TriggerIrq(dev.get(), kPciIntxIrqIndex, 0).value());
  EXPECT_EQ(ReadEventfd(efd), 1u);
  EXPECT_FALSE(k_.TriggerIrq(dev.get(), kPciIntxIrqIndex, 0).value());               // automasked
  EXPECT_EQ(Errno(SetIrqEventfds(k_, dev.get(), kPciMsiIrqIndex, 0, fds)), EINVAL);  // INTx on
  ASSERT_TRUE(DisableIrqs(k_, dev.get(), kPciIntxIrqIndex));
  EXPECT_EQ(Errno(DisableIrqs(k_, dev.get(), kPciIntxIrqIndex)), EINVAL);  // already off
  ::close(efd);
}

TEST_F(DeviceModel, MsiEventfdAndBadFds) {
  KernelFd dev = OpenEdu();
  int efd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  ASSERT_GE(efd, 0);
  int not_eventfd[] = {group_.get()};
  EXPECT_EQ(Errno(SetIrqEventfds(k_, dev.get(), kPciMsiIrqIndex, 0, not_eventfd)), EINVAL);
  int two[] = {efd, efd};
  EXPECT_EQ(Errno(SetIrqEventfds(k_, dev.get(), kPciMsiIrqIndex, 0, two)), EINVAL);  // 1 vector
  int fds[] = {efd};
  ASSERT_TRUE(SetIrqEventfds(k_, dev.get(), kPciMsiIrqIndex, 0, fds));
  ::close(efd);  // the model holds its own reference, as the kernel does
  EXPECT_TRUE(k_.TriggerIrq(dev.get(), kPciMsiIrqIndex, 0).value());
  EXPECT_EQ(Errno(k_.TriggerIrq(dev.get(), kPciMsiIrqIndex, 1)), EINVAL);
  ASSERT_TRUE(DisableIrqs(k_, dev.get(), kPciMsiIrqIndex));
  EXPECT_FALSE(k_.TriggerIrq(dev.get(), kPciMsiIrqIndex, 0).value());
}

ModelTopology SparseTopology() {
  ModelDevice nvme;
  nvme.bdf = "0000:00:05.0";
  nvme.vendor_id = 0x1b36;
  nvme.device_id = 0x0010;
  nvme.pcie = true;
  nvme.msix_count = 65;
  ModelRegion bar0;
  bar0.index = 0;
  bar0.size = 16 * kPage;
  bar0.sparse_mmap = {{0, 4 * kPage}, {8 * kPage, 8 * kPage}};  // MSI-X table in between
  nvme.regions = {bar0};
  return ModelTopology{{ModelGroup{5, {nvme}}}};
}

TEST(SparseModel, SparseMmapCapabilityIsReportedAndEnforced) {
  ModelKernel k(SparseTopology());
  KernelFd c(&k, k.open("/dev/vfio/vfio", O_RDWR).value());
  KernelFd g(&k, k.open("/dev/vfio/5", O_RDWR).value());
  ASSERT_TRUE(SetContainer(k, g.get(), c.get()));
  ASSERT_TRUE(SetIommuType1v2(k, c.get()));
  KernelFd dev(&k, GetDeviceFd(k, g.get(), "0000:00:05.0").value());
  RegionInfo bar0 = GetRegionInfo(k, dev.get(), 0).value();
  ASSERT_TRUE(bar0.sparse_mmap.has_value());
  EXPECT_EQ(*bar0.sparse_mmap, (std::vector<SparseArea>{{0, 4 * kPage}, {8 * kPage, 8 * kPage}}));
  EXPECT_EQ(k.IoctlCount("VFIO_DEVICE_GET_REGION_INFO"), 2u);  // grew once for the cap
  auto off = static_cast<off_t>(bar0.offset);
  EXPECT_EQ(Errno(k.mmap(nullptr, 16 * kPage, PROT_READ, MAP_SHARED, dev.get(), off)), EINVAL);
  void* p = k.mmap(nullptr, 8 * kPage, PROT_READ, MAP_SHARED, dev.get(),
                   off + static_cast<off_t>(8 * kPage))
                .value();
  ASSERT_TRUE(k.munmap(p, 8 * kPage));
  EXPECT_EQ(GetIrqInfo(k, dev.get(), kPciMsixIrqIndex)->count, 65u);
  EXPECT_EQ(GetRegionInfo(k, dev.get(), kPciConfigRegionIndex)->size, 4096u);
  EXPECT_EQ(GetIrqInfo(k, dev.get(), kPciErrIrqIndex)->count, 1u);
}

}  // namespace
}  // namespace vfiod::kernel::testing
