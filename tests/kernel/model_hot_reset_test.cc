// PCI hot reset in the model: the affected devices, the group fds the reset
// needs, and its effect on config space.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <vector>

#include "model_fixture.h"

namespace vfiod::kernel::testing {
namespace {

ModelDevice OnBus(const char* bdf, const char* bus, bool can_reset) {
  ModelDevice d;
  d.bdf = bdf;
  d.vendor_id = 0x1234;
  d.device_id = 0x11e8;
  d.can_reset = can_reset;
  d.reset_bus = bus;
  ModelRegion bar0;
  bar0.index = kPciBar0RegionIndex;
  bar0.size = 1 << 20;
  d.regions = {bar0};
  return d;
}

/// Two functions behind one root port (groups 8 and 9), one on the root bus.
ModelTopology BusTopology() {
  ModelDevice root = OnBus("0000:00:03.0", "", false);
  return ModelTopology{{ModelGroup{3, {root}}, ModelGroup{8, {OnBus("0000:01:00.0", "01", false)}},
                        ModelGroup{9, {OnBus("0000:01:00.1", "01", false)}}}};
}

class HotResetModel : public ::testing::Test {
 protected:
  HotResetModel() : k_(BusTopology()) {}
  void SetUp() override {
    c_ = KernelFd(&k_, k_.open("/dev/vfio/vfio", O_RDWR).value());
    for (int n : {3, 8, 9}) {
      groups_.emplace_back(&k_, k_.open(GroupPath(n), O_RDWR).value());
      ASSERT_TRUE(SetContainer(k_, groups_.back().get(), c_.get()));
    }
    ASSERT_TRUE(SetIommuType1v2(k_, c_.get()));
    dev_ = KernelFd(&k_, GetDeviceFd(k_, groups_[1].get(), "0000:01:00.0").value());
  }
  uint16_t Command() {
    off_t off = static_cast<off_t>(GetRegionInfo(k_, dev_.get(), kPciConfigRegionIndex)->offset);
    uint16_t cmd = 0;
    EXPECT_TRUE(k_.pread(dev_.get(), &cmd, 2, off + 4));
    return cmd;
  }
  void SetCommand(uint16_t cmd) {
    off_t off = static_cast<off_t>(GetRegionInfo(k_, dev_.get(), kPciConfigRegionIndex)->offset);
    ASSERT_TRUE(k_.pwrite(dev_.get(), &cmd, 2, off + 4));
  }

  ModelKernel k_;
  KernelFd c_;
  std::vector<KernelFd> groups_;  // 3, 8, 9
  KernelFd dev_;
};

TEST_F(HotResetModel, InfoListsEveryFunctionOnTheBusWithItsGroup) {
  EXPECT_EQ(Errno(ResetDevice(k_, dev_.get())), EINVAL);  // no function reset
  auto info = GetHotResetInfo(k_, dev_.get());
  ASSERT_TRUE(info) << info.error().message();
  EXPECT_EQ(*info, (std::vector<HotResetDevice>{{8, "0000:01:00.0"}, {9, "0000:01:00.1"}}));
}

TEST_F(HotResetModel, ResetNeedsEveryAffectedGroupAndClearsTheDevice) {
  SetCommand(0x0006);
  const int g8 = groups_[1].get();
  const int g9 = groups_[2].get();
  EXPECT_EQ(Errno(HotReset(k_, dev_.get(), std::vector<int>{g8})), EINVAL);  // 9 missing
  EXPECT_EQ(Errno(HotReset(k_, dev_.get(), std::vector<int>{g8, c_.get()})), EINVAL);
  EXPECT_EQ(Errno(HotReset(k_, dev_.get(), std::vector<int>{g8, 1000})), EBADF);
  EXPECT_EQ(Errno(HotReset(k_, dev_.get(), std::vector<int>{g8, g9, g9})), EINVAL);  // > count
  const off_t bar0 = static_cast<off_t>(GetRegionInfo(k_, dev_.get(), kPciBar0RegionIndex)->offset);
  const uint32_t left = 0x5ec2e7a5;
  ASSERT_TRUE(k_.pwrite(dev_.get(), &left, 4, bar0));
  EXPECT_EQ(Command(), 0x0006);  // a refused reset leaves the device alone
  ASSERT_TRUE(HotReset(k_, dev_.get(), std::vector<int>{g9, g8}));
  EXPECT_EQ(Command(), 0u);
  uint32_t seen = 1;
  ASSERT_TRUE(k_.pread(dev_.get(), &seen, 4, bar0));
  EXPECT_EQ(seen, 0u);  // its registers and memory too
}

TEST_F(HotResetModel, ADeviceOnTheRootBusHasNoHotReset) {
  KernelFd root(&k_, GetDeviceFd(k_, groups_[0].get(), "0000:00:03.0").value());
  EXPECT_EQ(Errno(GetHotResetInfo(k_, root.get())), ENODEV);
  EXPECT_EQ(Errno(HotReset(k_, root.get(), std::vector<int>{groups_[0].get()})), ENODEV);
}

TEST(HotResetModelBinding, ADeviceOfAHostDriverOnTheBusBlocksTheReset) {
  ModelTopology topo = BusTopology();
  topo.groups[2].devices[0].driver = "";  // 01:00.1 bound to no driver: not vfio-pci's
  ModelKernel k(topo);
  KernelFd c(&k, k.open("/dev/vfio/vfio", O_RDWR).value());
  KernelFd g8(&k, k.open(GroupPath(8), O_RDWR).value());
  ASSERT_TRUE(SetContainer(k, g8.get(), c.get()));
  ASSERT_TRUE(SetIommuType1v2(k, c.get()));
  KernelFd dev(&k, GetDeviceFd(k, g8.get(), "0000:01:00.0").value());
  EXPECT_EQ(GetHotResetInfo(k, dev.get())->size(), 2u);
  EXPECT_EQ(Errno(HotReset(k, dev.get(), std::vector<int>{g8.get()})), EINVAL);
}

}  // namespace
}  // namespace vfiod::kernel::testing
