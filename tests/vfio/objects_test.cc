// The typed VFIO objects on the kernel model (VmLikeTopology: edu in group 3,
// ivshmem in group 4, the non-viable ICH9 group 7).
#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/mman.h>

#include <cstring>

#include "fake_sysfs.h"
#include "kernel/model_kernel.h"
#include "proto/unique_fd.h"
#include "support/scoped_entry.h"
#include "vfio/container.h"
#include "vfio/device.h"
#include "vfio/group.h"
#include "vfio/irq.h"
#include "vfio/region.h"

namespace vfiod::vfio {
namespace {

using ::testing::HasSubstr;

constexpr const char* kEdu = "0000:00:03.0";
constexpr const char* kIvshmem = "0000:00:04.0";
constexpr int kEduGroup = 3;
constexpr int kIvshmemGroup = 4;
constexpr int kIch9Group = 7;

class VfioObjectsTest : public ::testing::Test {
 protected:
  std::shared_ptr<Container> OpenContainer() { return Container::Open(model_).value(); }

  // Container + attached group + open device, the usual first three steps.
  std::shared_ptr<Device> OpenDevice(const char* bdf, int group_no) {
    auto container = OpenContainer();
    auto group = Group::Open(model_, group_no).value();
    EXPECT_TRUE(group->Attach(container).has_value());
    return Device::Open(group, bdf).value();
  }

  kernel::ModelKernel model_{kernel::VmLikeTopology()};
};

TEST_F(VfioObjectsTest, ContainerProbesTheType1v2Features) {
  auto container = OpenContainer();
  EXPECT_TRUE(container->features().type1v2);
  EXPECT_TRUE(container->features().unmap_all);
  EXPECT_FALSE(container->iommu_set());
  EXPECT_EQ(container->IommuInfo().error().code, EINVAL);  // no group yet
}

TEST_F(VfioObjectsTest, FirstGroupSetsTheIommuAndLastDetachDropsIt) {
  auto container = OpenContainer();
  auto edu = Group::Open(model_, kEduGroup).value();
  auto ivshmem = Group::Open(model_, kIvshmemGroup).value();
  ASSERT_TRUE(edu->Attach(container).has_value());
  ASSERT_TRUE(ivshmem->Attach(container).has_value());
  EXPECT_EQ(model_.IoctlCount("VFIO_SET_IOMMU"), 1u);
  EXPECT_TRUE(container->iommu_set());
  EXPECT_TRUE(edu->Status().value().container_set);
  auto info = container->IommuInfo().value();
  EXPECT_EQ(info.iova_pgsizes, 0x40201000u);
  EXPECT_EQ(info.iova_ranges, kernel::ModelKnobs{}.iova_ranges);
  EXPECT_EQ(edu->Attach(container).error().code, EBUSY);
  ASSERT_TRUE(edu->Detach().has_value());
  EXPECT_TRUE(container->iommu_set());
  ASSERT_TRUE(ivshmem->Detach().has_value());
  EXPECT_FALSE(container->iommu_set());
  EXPECT_EQ(ivshmem->Detach().error().code, EINVAL);
}

TEST_F(VfioObjectsTest, MissingGroupSaysWhatToCheck) {
  auto r = Group::Open(model_, 42);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ENOENT);
  EXPECT_THAT(r.error().detail, HasSubstr("vfio-pci"));
}

TEST_F(VfioObjectsTest, NonViableGroupIsRefusedNamingTheBlockingDrivers) {
  testing::FakeSysfs fake;
  fake.AddDevice("0000:00:1f.0", "8086:2918", kIch9Group, "lpc_ich");
  fake.AddDevice("0000:00:1f.2", "8086:2922", kIch9Group, "ahci");
  fake.AddDevice("0000:00:1f.3", "8086:2930", kIch9Group, "vfio-pci");
  PciSysfs sysfs(fake.root());
  auto r = Group::Open(model_, kIch9Group, &sysfs);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, EPERM);
  EXPECT_THAT(r.error().detail, HasSubstr("0000:00:1f.0 (lpc_ich), 0000:00:1f.2 (ahci)"));
  EXPECT_THAT(r.error().detail, ::testing::Not(HasSubstr("1f.3")));
  EXPECT_EQ(model_.OpenFdCount(), 0u);  // the refused group's fd was closed
}

TEST_F(VfioObjectsTest, DeviceNeedsAnAttachedGroupAndAMember) {
  auto group = Group::Open(model_, kEduGroup).value();
  EXPECT_EQ(Device::Open(group, kEdu).error().code, EINVAL);
  auto container = OpenContainer();
  ASSERT_TRUE(group->Attach(container).has_value());
  EXPECT_EQ(Device::Open(group, kIvshmem).error().code, ENODEV);
  auto dev = Device::Open(group, kEdu).value();
  EXPECT_TRUE(dev->info().is_pci());
  EXPECT_GE(dev->info().num_regions, kernel::kPciNumRegions);
  EXPECT_EQ(dev->RegionInfo(dev->info().num_regions).error().code, EINVAL);
  EXPECT_EQ(dev->IrqInfo(dev->info().num_irqs).error().code, EINVAL);
}

TEST_F(VfioObjectsTest, TeardownGoesDeviceThenGroupThenContainer) {
  auto dev = OpenDevice(kEdu, kEduGroup);
  // The test dropped its container and group handles; the device keeps both.
  EXPECT_EQ(model_.OpenFdCount(), 3u);
  EXPECT_EQ(model_.IoctlCount("VFIO_GROUP_UNSET_CONTAINER"), 0u);
  dev.reset();
  EXPECT_EQ(model_.IoctlCount("VFIO_GROUP_UNSET_CONTAINER"), 1u);
  EXPECT_EQ(model_.OpenFdCount(), 0u);
}

TEST_F(VfioObjectsTest, DetachWhileADeviceIsOpenIsBusy) {
  auto container = OpenContainer();
  auto group = Group::Open(model_, kEduGroup).value();
  ASSERT_TRUE(group->Attach(container).has_value());
  auto dev = Device::Open(group, kEdu).value();
  EXPECT_EQ(group->Detach().error().code, EBUSY);
  dev.reset();
  EXPECT_TRUE(group->Detach().has_value());
}

// A client still holds a copy of the device fd (device.open hands one out):
// the group cannot detach (EBUSY), which is no error, since the copy holds
// the group file and the kernel detaches it when the copy closes. Nothing is
// printed, and the group is free once the copy is closed.
TEST_F(VfioObjectsTest, ClosingAGroupWhileAHandedOutDeviceFdIsOpenIsQuiet) {
  auto dev = OpenDevice(kEdu, kEduGroup);
  UniqueFd copy(::fcntl(dev->fd(), F_DUPFD_CLOEXEC, 0));
  ASSERT_TRUE(copy);
  ::testing::internal::CaptureStderr();
  dev.reset();  // the device, then its group and container
  EXPECT_EQ(::testing::internal::GetCapturedStderr(), "");
  EXPECT_EQ(model_.IoctlCount("VFIO_GROUP_UNSET_CONTAINER"), 1u);  // tried: EBUSY
  EXPECT_EQ(Group::Open(model_, kEduGroup).error().code, EBUSY);
  copy.reset();
  auto again = Group::Open(model_, kEduGroup);
  ASSERT_TRUE(again) << again.error().message();
  EXPECT_FALSE(again.value()->Status().value().container_set);
}

TEST_F(VfioObjectsTest, ConfigSpaceAndBusMaster) {
  auto dev = OpenDevice(kEdu, kEduGroup);
  EXPECT_EQ(dev->ReadConfig16(0).value(), 0x1234);
  EXPECT_EQ(dev->ReadConfig16(2).value(), 0x11e8);
  EXPECT_EQ(dev->ReadConfig32(0).value(), 0x11e81234u);
  uint16_t before = dev->ReadConfig16(kPciCommandOffset).value();
  EXPECT_EQ(before & kPciCommandBusMaster, 0);
  ASSERT_TRUE(dev->SetBusMaster(true).has_value());
  EXPECT_NE(dev->ReadConfig16(kPciCommandOffset).value() & kPciCommandBusMaster, 0);
  ASSERT_TRUE(dev->SetBusMaster(false).has_value());
  EXPECT_EQ(dev->ReadConfig16(kPciCommandOffset).value() & kPciCommandBusMaster, 0);
  EXPECT_EQ(dev->ReadConfig32(0x1000).error().code, EINVAL);  // past conventional config
}

TEST_F(VfioObjectsTest, BarMapIsNaturallyAlignedAndSharesTheDeviceMemory) {
  auto dev = OpenDevice(kIvshmem, kIvshmemGroup);
  auto bar2 = RegionMapping::Map(dev, 2).value();
  EXPECT_EQ(bar2.size(), 64u << 20);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(bar2.data()) % (64u << 20), 0u);
  std::memcpy(bar2.data() + 4096, "peer", 4);
  std::byte back[4];
  ASSERT_TRUE(dev->ReadRegion(2, 4096, back).has_value());
  EXPECT_EQ(std::memcmp(back, "peer", 4), 0);
  EXPECT_TRUE(bar2.Accessible(0, 64u << 20));
  EXPECT_FALSE(bar2.Accessible(1, 64u << 20));
}

TEST_F(VfioObjectsTest, ExplicitAlignmentAndBadAlignment) {
  auto dev = OpenDevice(kEdu, kEduGroup);
  auto bar0 = RegionMapping::Map(dev, 0, {.alignment = 1u << 24, .write = true}).value();
  EXPECT_EQ(reinterpret_cast<uintptr_t>(bar0.data()) % (1u << 24), 0u);
  EXPECT_EQ(RegionMapping::Map(dev, 0, {.alignment = 3u << 20, .write = true}).error().code,
            EINVAL);
  EXPECT_EQ(RegionMapping::Map(dev, kernel::kPciConfigRegionIndex).error().code, EINVAL);
  EXPECT_EQ(NaturalAlignment(3u << 20), 4u << 20);
  EXPECT_EQ(NaturalAlignment(uint64_t{8} << 30), uint64_t{1} << 30);
}

TEST_F(VfioObjectsTest, RegionMappingKeepsTheDeviceAliveAndUnmaps) {
  auto dev = OpenDevice(kEdu, kEduGroup);
  auto bar0 = RegionMapping::Map(dev, 0).value();
  std::byte* addr = bar0.data();
  dev.reset();
  EXPECT_EQ(model_.OpenFdCount(), 3u);  // the mapping holds device, group, container
  *reinterpret_cast<volatile uint32_t*>(addr) = 7;
  { RegionMapping gone = std::move(bar0); }
  EXPECT_EQ(model_.OpenFdCount(), 0u);
  unsigned char vec = 0;  // the range is no longer mapped
  EXPECT_NE(::mincore(addr, 4096, &vec), 0);
  EXPECT_EQ(errno, ENOMEM);
}

TEST(VfioSparseRegion, OnlyTheSparseAreasAreMapped) {
  kernel::ModelDevice d;
  d.bdf = "0000:00:05.0";
  d.vendor_id = 0x8086;
  d.device_id = 0x10d3;
  kernel::ModelRegion bar0;
  bar0.size = 1u << 20;
  bar0.sparse_mmap = {{0, 0x10000}, {0x20000, 0xe0000}};
  d.regions.push_back(bar0);
  d.msix_count = 4;
  kernel::ModelTopology topo;
  topo.groups.push_back({.id = 5, .devices = {d}});
  kernel::ModelKernel model(topo);
  auto container = Container::Open(model).value();
  auto group = Group::Open(model, 5).value();
  ASSERT_TRUE(group->Attach(container).has_value());
  auto dev = Device::Open(group, "0000:00:05.0").value();
  auto bar = RegionMapping::Map(dev, 0).value();
  ASSERT_EQ(bar.areas().size(), 2u);
  EXPECT_TRUE(bar.Accessible(0, 0x10000));
  EXPECT_FALSE(bar.Accessible(0x10000, 4));  // the hole (an MSI-X table, say)
  EXPECT_TRUE(bar.Accessible(0x20000, 0xe0000));
  unsigned char vec = 0;  // the hole is reserved but not backed by the device
  EXPECT_EQ(::mincore(bar.data() + 0x10000, 4096, &vec), 0);
  bar.data()[0x20000] = std::byte{1};
}

TEST_F(VfioObjectsTest, MsiEventfdReceivesTheModelsTrigger) {
  auto dev = OpenDevice(kEdu, kEduGroup);
  auto irqs = IrqSet::Enable(dev, kernel::kPciMsiIrqIndex, 1).value();
  EXPECT_EQ(irqs.TryConsume(0).error().code, EAGAIN);
  EXPECT_TRUE(model_.TriggerIrq(dev->fd(), kernel::kPciMsiIrqIndex, 0).value());
  EXPECT_TRUE(model_.TriggerIrq(dev->fd(), kernel::kPciMsiIrqIndex, 0).value());
  EXPECT_EQ(irqs.Wait(0, std::chrono::seconds(5)).value(), 2u);
  EXPECT_EQ(irqs.Wait(0, std::chrono::milliseconds(1)).error().code, ETIMEDOUT);
  EXPECT_EQ(irqs.Wait(1, std::chrono::milliseconds(1)).error().code, EINVAL);
}

TEST_F(VfioObjectsTest, IntxSignalsOncePerUnmask) {
  auto dev = OpenDevice(kEdu, kEduGroup);
  auto intx = IrqSet::Enable(dev, kernel::kPciIntxIrqIndex, 1).value();
  EXPECT_TRUE(model_.TriggerIrq(dev->fd(), kernel::kPciIntxIrqIndex, 0).value());
  EXPECT_FALSE(model_.TriggerIrq(dev->fd(), kernel::kPciIntxIrqIndex, 0).value());  // automasked
  EXPECT_EQ(intx.Wait(0, std::chrono::seconds(5)).value(), 1u);
  ASSERT_TRUE(intx.Unmask(0).has_value());
  EXPECT_TRUE(model_.TriggerIrq(dev->fd(), kernel::kPciIntxIrqIndex, 0).value());
  EXPECT_EQ(intx.Wait(0, std::chrono::seconds(5)).value(), 1u);
  EXPECT_EQ(intx.Unmask(1).error().code, EINVAL);
  ASSERT_TRUE(intx.Disable().has_value());
  auto msi = IrqSet::Enable(dev, kernel::kPciMsiIrqIndex, 1).value();
  EXPECT_EQ(msi.Unmask(0).error().code, ENOTTY);
}

TEST_F(VfioObjectsTest, IrqSetDisablesOnDestruction) {
  auto dev = OpenDevice(kEdu, kEduGroup);
  {
    auto irqs = IrqSet::Enable(dev, kernel::kPciMsiIrqIndex, 1).value();
    IrqSet moved = std::move(irqs);
    EXPECT_EQ(moved.count(), 1u);
  }
  EXPECT_FALSE(model_.TriggerIrq(dev->fd(), kernel::kPciMsiIrqIndex, 0).value());
  EXPECT_EQ(IrqSet::Enable(dev, kernel::kPciMsiIrqIndex, 2).error().code, EINVAL);
  EXPECT_EQ(IrqSet::Enable(dev, kernel::kPciMsiIrqIndex, 0).error().code, EINVAL);
}

class ScopedEntryTest : public VfioObjectsTest {
 protected:
  void SetUp() override {
    device_ = OpenDevice(kEdu, kEduGroup);
    container_ = device_->group()->container();
    buf_ = ::mmap(nullptr, kSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    ASSERT_NE(buf_, MAP_FAILED);
  }
  void TearDown() override { ::munmap(buf_, kSize); }
  kernel::DmaMap At(uint64_t iova, uint64_t size = kSize) const {
    return {.vaddr = reinterpret_cast<uint64_t>(buf_),
            .iova = iova,
            .size = size,
            .read = true,
            .write = true};
  }

  static constexpr uint64_t kSize = 2u << 20;
  std::shared_ptr<Device> device_;
  std::shared_ptr<Container> container_;
  void* buf_ = nullptr;
};

TEST_F(ScopedEntryTest, MapsAndUnmapsOnDestruction) {
  {
    auto m = test::ScopedEntry::Map(container_, At(0x100000)).value();
    EXPECT_EQ(m.iova(), 0x100000u);
    auto maps = model_.Entries(container_->fd()).value();
    ASSERT_EQ(maps.size(), 1u);
    EXPECT_EQ(maps[0].size, kSize);
    EXPECT_EQ(test::ScopedEntry::Map(container_, At(0x200000)).error().code, EEXIST);
  }
  EXPECT_TRUE(model_.Entries(container_->fd()).value().empty());
}

TEST_F(ScopedEntryTest, UnmapChecksTheSizeTheKernelRemoved) {
  auto m = test::ScopedEntry::Map(container_, At(0x100000)).value();
  ASSERT_EQ(container_->Unmap(0x100000, kSize).value(), kSize);  // behind its back
  auto r = m.Unmap();
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, EIO);
  EXPECT_FALSE(m.mapped());
}

TEST_F(ScopedEntryTest, ContainerCallsCheckTheIommuAndPassTheModelsErrors) {
  EXPECT_EQ(container_->Map(At(0xfee00000)).error().code, EINVAL);  // the MSI window
  EXPECT_EQ(container_->Map(At(0x1001)).error().code, EINVAL);      // misaligned
  ASSERT_TRUE(container_->Map(At(0x400000)).has_value());
  ASSERT_TRUE(container_->Map(At(0x800000)).has_value());
  EXPECT_EQ(container_->Unmap(0x400000, 4096).error().code, EINVAL);  // would split
  EXPECT_EQ(container_->Unmap(0x10000000, 4096).value(), 0u);         // nothing there
  EXPECT_EQ(container_->UnmapAll().value(), 2 * kSize);
  auto bare = OpenContainer();
  EXPECT_EQ(bare->Map(At(0x100000)).error().code, EINVAL);
}

// The live-restart pair: the entry keeps its IOVA, size and pins while its
// address moves; errors of the kernel pass through, and a container without
// an IOMMU refuses both before any ioctl.
TEST_F(ScopedEntryTest, InvalidateThenUpdateMovesTheEntrysAddress) {
  EXPECT_TRUE(container_->features().update_vaddr);
  ASSERT_TRUE(container_->Map(At(0x400000)).has_value());
  void* moved = ::mmap(nullptr, kSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(moved, MAP_FAILED);
  auto to = reinterpret_cast<uint64_t>(moved);
  EXPECT_EQ(container_->UpdateVaddr(to, 0x400000, kSize).error().code, EINVAL);  // still valid
  ASSERT_EQ(container_->InvalidateVaddr(0x400000, kSize).value(), kSize);
  EXPECT_EQ(container_->InvalidateVaddr(0x400000, kSize).error().code, EINVAL);  // twice
  EXPECT_EQ(container_->UpdateVaddr(to, 0x10000000, kSize).error().code, ENOENT);
  ASSERT_TRUE(container_->UpdateVaddr(to, 0x400000, kSize).has_value());
  auto maps = model_.Entries(container_->fd()).value();
  ASSERT_EQ(maps.size(), 1u);
  EXPECT_EQ(maps[0].vaddr, to);
  EXPECT_EQ(maps[0].locked_bytes, kSize);  // charged once, not again
  auto bare = OpenContainer();
  EXPECT_EQ(bare->InvalidateVaddr(0x400000, kSize).error().code, EINVAL);
  EXPECT_EQ(bare->UpdateVaddr(to, 0x400000, kSize).error().code, EINVAL);
  ::munmap(moved, kSize);
}

}  // namespace
}  // namespace vfiod::vfio
