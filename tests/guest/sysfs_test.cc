// PciSysfs against the guest's real sysfs: what it reads matches the devices
// QEMU emulates, and bind/unbind really move a device between drivers.
#include <gtest/gtest.h>

#include "rig.h"

namespace vfiod::testing {
namespace {

TEST_F(GuestTest, SysfsDescribesEduAndIvshmem) {
  auto edu = sysfs_.Get(edu_bdf_);
  ASSERT_TRUE(edu.has_value()) << edu.error().message();
  EXPECT_EQ(edu->vendor, kEduVendor);
  EXPECT_EQ(edu->device, kEduDeviceId);
  EXPECT_EQ(edu->driver, "vfio-pci");
  EXPECT_TRUE(edu->group_viable());
  ASSERT_EQ(edu->bars.size(), 6u);
  EXPECT_EQ(edu->bars[0].size, uint64_t{1} << 20);
  EXPECT_FALSE(edu->bars[0].io);

  auto ivshmem = sysfs_.Get(ivshmem_bdf_);
  ASSERT_TRUE(ivshmem.has_value()) << ivshmem.error().message();
  EXPECT_EQ(ivshmem->vendor, 0x1af4);
  EXPECT_EQ(ivshmem->device, 0x1110);
  ASSERT_EQ(ivshmem->bars.size(), 6u);
  EXPECT_EQ(ivshmem->bars[2].size, uint64_t{64} << 20);
  EXPECT_TRUE(ivshmem->bars[2].is_64bit);
  EXPECT_TRUE(ivshmem->bars[2].prefetchable);

  auto by_ids = sysfs_.Find(vfio::ParsePciMatch("1234:11e8").value());
  ASSERT_TRUE(by_ids.has_value());
  ASSERT_EQ(by_ids->size(), 1u);
  EXPECT_EQ((*by_ids)[0].bdf, edu_bdf_);

  auto nonviable = sysfs_.Get(nonviable_bdf_);
  ASSERT_TRUE(nonviable.has_value());
  EXPECT_EQ(nonviable->driver, "vfio-pci");
  EXPECT_FALSE(nonviable->group_viable());
  EXPECT_FALSE(nonviable->blocking_members().empty());
}

// Unbind the NVMe controller, then bind it back to vfio-pci through
// driver_override and drivers_probe; the group is usable again afterwards.
TEST_F(GuestTest, UnbindAndBindVfioOnTheRealKernel) {
  std::string nvme = Env("VFIOD_NVME_BDF");
  ASSERT_FALSE(nvme.empty()) << "VFIOD_NVME_BDF is not set";
  ASSERT_TRUE(sysfs_.Unbind(nvme).has_value());
  auto unbound = sysfs_.Get(nvme);
  ASSERT_TRUE(unbound.has_value());
  EXPECT_EQ(unbound->driver, "");

  auto record = sysfs_.BindVfio(nvme);
  ASSERT_TRUE(record.has_value()) << record.error().message();
  EXPECT_EQ(record->previous_driver, "");
  EXPECT_TRUE(record->group_viable);
  EXPECT_EQ(sysfs_.Get(nvme).value().driver, "vfio-pci");

  auto container = vfio::Container::Open(*kernel_);
  ASSERT_TRUE(container.has_value()) << container.error().message();
  auto dev = OpenDevice(*container, nvme);
  ASSERT_NE(dev, nullptr);
  EXPECT_EQ(dev->ReadConfig8(0x0b).value_or(0), 0x01);  // class: mass storage
}

}  // namespace
}  // namespace vfiod::testing
