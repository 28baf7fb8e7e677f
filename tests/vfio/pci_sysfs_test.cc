#include "vfio/pci_sysfs.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "fake_sysfs.h"

namespace vfiod::vfio {
namespace {

using ::testing::ElementsAre;
using testing::FakeSysfs;

TEST(PciSysfsParse, NormalizeBdf) {
  EXPECT_EQ(NormalizeBdf("00:03.0").value(), "0000:00:03.0");
  EXPECT_EQ(NormalizeBdf("0000:0A:1F.7").value(), "0000:0a:1f.7");
  EXPECT_EQ(NormalizeBdf("0000:00:03.8").error().code, EINVAL);
  EXPECT_EQ(NormalizeBdf("1234:11e8").error().code, EINVAL);
  EXPECT_EQ(NormalizeBdf("").error().code, EINVAL);
  EXPECT_EQ(NormalizeBdf("0000:00:20.0").error().code, EINVAL);  // a slot is 5 bits
  EXPECT_EQ(NormalizeBdf("0000:00:1f.7").value(), "0000:00:1f.7");
  EXPECT_EQ(NormalizeBdf("00:03.0", BdfDomain::kRequired).error().code, EINVAL);
  EXPECT_EQ(NormalizeBdf("ABCD:EF:1F.7", BdfDomain::kRequired).value(), "abcd:ef:1f.7");
  for (const char* bad :
       {"0000:00:03", "0000-00:03.0", "0000:00:03:0", "000g:00:03.0", "0000:00:03.0\n",
        " 0000:00:03.0", "00000:00:03.0", "+000:00:03.0", "0000:+0:03.0", "0000:00:+3.0"}) {
    EXPECT_EQ(NormalizeBdf(bad).error().code, EINVAL) << bad;
  }
}

TEST(PciSysfsParse, Selector) {
  PciMatch by_bdf = ParsePciMatch("00:03.0").value();
  EXPECT_EQ(by_bdf.bdf, "0000:00:03.0");
  EXPECT_FALSE(by_bdf.ids);
  PciMatch by_ids = ParsePciMatch("1234:11E8").value();
  ASSERT_TRUE(by_ids.ids);
  EXPECT_EQ(by_ids.ids->first, 0x1234);
  EXPECT_EQ(by_ids.ids->second, 0x11e8);
  EXPECT_EQ(ParsePciMatch("12345:11e8").error().code, EINVAL);
  EXPECT_EQ(ParsePciMatch("edu").error().code, EINVAL);
}

TEST(PciSysfsParse, ResourceFlags) {
  auto bars = ParseResourceFile(
      "0x000000000000c000 0x000000000000c03f 0x0000000000040101\n"
      "0x00000000fea00000 0x00000000feafffff 0x0000000000040200\n"
      "0x0000008000000000 0x0000008003ffffff 0x000000000014220c\n"
      "0x0000000000000000 0x0000000000000000 0x0000000000000000\n"
      "0x0000000000000000 0x0000000000000000 0x0000000000000000\n"
      "0x0000000000000000 0x0000000000000000 0x0000000000000000\n"
      "0x00000000feb00000 0x00000000feb3ffff 0x0000000000046200\n");
  ASSERT_EQ(bars.size(), 6u);  // the ROM line is not a BAR
  EXPECT_TRUE(bars[0].io);
  EXPECT_EQ(bars[0].size, 0x40u);
  EXPECT_FALSE(bars[1].io);
  EXPECT_FALSE(bars[1].is_64bit);
  EXPECT_EQ(bars[1].start, 0xfea00000u);
  EXPECT_EQ(bars[1].size, 1u << 20);
  EXPECT_TRUE(bars[2].is_64bit);
  EXPECT_TRUE(bars[2].prefetchable);
  EXPECT_EQ(bars[2].size, 64u << 20);
  EXPECT_EQ(bars[3].size, 0u);
  EXPECT_EQ(bars[5].index, 5u);
}

TEST(PciSysfsParse, DriversThatKeepGroupsViable) {
  EXPECT_TRUE(DriverAllowsVfio(""));
  EXPECT_TRUE(DriverAllowsVfio("vfio-pci"));
  EXPECT_TRUE(DriverAllowsVfio("pci-stub"));
  EXPECT_TRUE(DriverAllowsVfio("pcieport"));
  EXPECT_TRUE(DriverAllowsVfio("mlx5_vfio_pci"));
  EXPECT_FALSE(DriverAllowsVfio("ahci"));
  EXPECT_FALSE(DriverAllowsVfio("lpc_ich"));
  EXPECT_FALSE(DriverAllowsVfio("vfio"));
}

class PciSysfsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    fake_.AddDevice("0000:00:03.0", "1234:11e8", 3, "vfio-pci");
    fake_.AddDevice("0000:00:04.0", "1af4:1110", 4, "", "");
    fake_.AddDevice("0000:00:05.0", "8086:10d3", 5, "e1000e", "e1000e");
    fake_.AddDevice("0000:00:1f.0", "8086:2918", 9, "lpc_ich", "lpc_ich");
    fake_.AddDevice("0000:00:1f.2", "8086:2922", 9, "ahci", "ahci");
    fake_.AddDevice("0000:00:1f.3", "8086:2930", 9, "i801_smbus", "i801_smbus");
  }
  FakeSysfs fake_;
  PciSysfs sysfs_{fake_.root(), fake_.Hook()};
};

TEST_F(PciSysfsTest, ListsDevicesWithIdsDriversGroupsAndBars) {
  auto devs = sysfs_.List().value();
  ASSERT_EQ(devs.size(), 6u);
  const PciDevice& edu = devs[0];
  EXPECT_EQ(edu.bdf, "0000:00:03.0");
  EXPECT_EQ(edu.vendor, 0x1234);
  EXPECT_EQ(edu.device, 0x11e8);
  EXPECT_EQ(edu.subsystem_vendor, 0x1af4);
  EXPECT_EQ(edu.class_code, 0x00ff00u);
  EXPECT_EQ(edu.driver, "vfio-pci");
  EXPECT_EQ(edu.driver_override, "");
  EXPECT_EQ(edu.iommu_group, 3);
  EXPECT_EQ(edu.numa_node, -1);
  ASSERT_EQ(edu.bars.size(), 6u);
  EXPECT_EQ(edu.bars[0].size, 1u << 20);
  EXPECT_TRUE(edu.group_viable());
  EXPECT_EQ(devs[1].driver, "");
  EXPECT_TRUE(devs[1].group_viable());  // a driverless device does not block
  EXPECT_FALSE(devs[2].group_viable());
}

TEST_F(PciSysfsTest, MissingTreeIsAnError) {
  PciSysfs empty(fake_.root() / "nowhere");
  EXPECT_EQ(empty.List().error().code, ENOENT);
}

TEST_F(PciSysfsTest, SharedGroupIsNotViableAndNamesTheBlockers) {
  auto smbus = sysfs_.Get("00:1f.3").value();
  ASSERT_EQ(smbus.group_members.size(), 3u);
  EXPECT_FALSE(smbus.group_viable());
  // Binding only one function of the group leaves the other two blocking it.
  auto record = sysfs_.BindVfio("0000:00:1f.3").value();
  EXPECT_EQ(record.previous_driver, "i801_smbus");
  EXPECT_FALSE(record.group_viable);
  EXPECT_THAT(record.blocking_members,
              ElementsAre("0000:00:1f.0 (lpc_ich)", "0000:00:1f.2 (ahci)"));
  EXPECT_EQ(sysfs_.Get("0000:00:1f.3").value().driver, "vfio-pci");
}

TEST_F(PciSysfsTest, PciStubAndPcieportKeepTheGroupViable) {
  fake_.BindTo("0000:00:1f.0", "pcieport");
  fake_.BindTo("0000:00:1f.2", "pci-stub");
  fake_.BindTo("0000:00:1f.3", "vfio-pci");
  EXPECT_TRUE(sysfs_.Get("0000:00:1f.3").value().group_viable());
}

TEST_F(PciSysfsTest, FindsByBdfAndByIds) {
  auto by_ids = sysfs_.Find(ParsePciMatch("8086:2922").value()).value();
  ASSERT_EQ(by_ids.size(), 1u);
  EXPECT_EQ(by_ids[0].bdf, "0000:00:1f.2");
  auto by_bdf = sysfs_.Find(ParsePciMatch("00:04.0").value()).value();
  ASSERT_EQ(by_bdf.size(), 1u);
  EXPECT_EQ(by_bdf[0].vendor, 0x1af4);
  EXPECT_EQ(sysfs_.Find(ParsePciMatch("dead:beef").value()).error().code, ENODEV);
}

TEST_F(PciSysfsTest, BindWritesOverrideUnbindsThenProbes) {
  auto record = sysfs_.BindVfio("0000:00:05.0").value();
  EXPECT_EQ(record.previous_driver, "e1000e");
  EXPECT_EQ(record.previous_override, "");
  EXPECT_TRUE(record.group_viable);
  EXPECT_EQ(fake_.log(),
            "bus/pci/devices/0000:00:05.0/driver_override=vfio-pci;"
            "bus/pci/devices/0000:00:05.0/driver/unbind=0000:00:05.0;"
            "bus/pci/drivers_probe=0000:00:05.0;");
  auto dev = sysfs_.Get("0000:00:05.0").value();
  EXPECT_EQ(dev.driver, "vfio-pci");
  EXPECT_EQ(dev.driver_override, "vfio-pci");
}

TEST_F(PciSysfsTest, RestoreReturnsThePreviousDriver) {
  auto record = sysfs_.BindVfio("0000:00:05.0").value();
  ASSERT_TRUE(sysfs_.Restore(record).has_value());
  auto dev = sysfs_.Get("0000:00:05.0").value();
  EXPECT_EQ(dev.driver, "e1000e");
  EXPECT_EQ(dev.driver_override, "");
}

TEST_F(PciSysfsTest, BindingABoundDeviceChangesNothing) {
  auto record = sysfs_.BindVfio("0000:00:03.0").value();
  EXPECT_EQ(record.previous_driver, "vfio-pci");
  EXPECT_EQ(fake_.log(), "");
}

TEST_F(PciSysfsTest, BindRefusesAMissingDevice) {
  auto r = sysfs_.BindVfio("0000:00:09.0");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ENODEV);
  EXPECT_EQ(fake_.log(), "");
  EXPECT_EQ(sysfs_.BindVfio("bogus").error().code, EINVAL);
}

TEST_F(PciSysfsTest, BindReportsWhenVfioPciDidNotTakeTheDevice) {
  fake_.set_vfio_loaded(false);
  auto r = sysfs_.BindVfio("0000:00:04.0");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, EIO);
  EXPECT_THAT(r.error().detail, ::testing::HasSubstr("vfio-pci loaded"));
}

}  // namespace
}  // namespace vfiod::vfio
