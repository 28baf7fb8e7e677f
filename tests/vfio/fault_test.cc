// The typed VFIO objects when the kernel fails: errors propagate with their
// errno, partial work is undone, and nothing leaks (fds, attachments, mmaps).
#include <dirent.h>
#include <gtest/gtest.h>
#include <sys/mman.h>

#include "kernel/fault_kernel.h"
#include "kernel/model_kernel.h"
#include "support/scoped_entry.h"
#include "vfio/container.h"
#include "vfio/device.h"
#include "vfio/group.h"
#include "vfio/irq.h"
#include "vfio/region.h"

namespace vfiod::vfio {
namespace {

using kernel::Fault;
using kernel::KernelOp;

constexpr const char* kEdu = "0000:00:03.0";
constexpr int kEduGroup = 3;

// Open fds of this process (eventfds are not the model's, so count them here).
size_t ProcessFdCount() {
  size_t n = 0;
  DIR* d = ::opendir("/proc/self/fd");
  while (d != nullptr && ::readdir(d) != nullptr) {
    ++n;
  }
  if (d != nullptr) {
    ::closedir(d);
  }
  return n;
}

class VfioFaultTest : public ::testing::Test {
 protected:
  std::shared_ptr<Device> OpenEdu() {
    auto container = Container::Open(faulty_).value();
    auto group = Group::Open(faulty_, kEduGroup).value();
    EXPECT_TRUE(group->Attach(container).has_value());
    return Device::Open(group, kEdu).value();
  }

  kernel::ModelKernel model_{kernel::VmLikeTopology()};
  kernel::FaultInjectingKernel faulty_{model_};
};

TEST_F(VfioFaultTest, ContainerOpenFailureClosesTheFd) {
  faulty_.Arm(Fault::Ioctl("VFIO_GET_API_VERSION", 1, EIO));
  auto r = Container::Open(faulty_);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, EIO);
  EXPECT_EQ(r.error().op, "VFIO_GET_API_VERSION");
  EXPECT_EQ(model_.OpenFdCount(), 0u);
}

TEST_F(VfioFaultTest, SetIommuFailureUndoesTheAttach) {
  auto container = Container::Open(faulty_).value();
  auto group = Group::Open(faulty_, kEduGroup).value();
  faulty_.Arm(Fault::Ioctl("VFIO_SET_IOMMU", 1, ENOMEM));
  auto r = group->Attach(container);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ENOMEM);
  EXPECT_FALSE(group->Status().value().container_set);
  EXPECT_FALSE(container->iommu_set());
  EXPECT_EQ(container->attached_groups(), 0);
  EXPECT_EQ(group->container(), nullptr);
  faulty_.Clear();
  ASSERT_TRUE(group->Attach(container).has_value());
  EXPECT_TRUE(container->iommu_set());
}

TEST_F(VfioFaultTest, FeatureProbeFailureAfterSetIommuUndoesTheAttach) {
  auto container = Container::Open(faulty_).value();
  auto group = Group::Open(faulty_, kEduGroup).value();
  faulty_.Arm(Fault::Ioctl("VFIO_CHECK_EXTENSION", 1, EIO));
  EXPECT_EQ(group->Attach(container).error().code, EIO);
  EXPECT_EQ(faulty_.IoctlCalls("VFIO_SET_IOMMU"), 1u);
  EXPECT_FALSE(group->Status().value().container_set);
  EXPECT_FALSE(container->iommu_set());
  EXPECT_EQ(container->attached_groups(), 0);
  faulty_.Clear();
  ASSERT_TRUE(group->Attach(container).has_value());
  EXPECT_TRUE(container->IommuInfo().has_value());
}

TEST_F(VfioFaultTest, DeviceOpenFailureLeavesTheGroupDetachable) {
  auto container = Container::Open(faulty_).value();
  auto group = Group::Open(faulty_, kEduGroup).value();
  ASSERT_TRUE(group->Attach(container).has_value());
  faulty_.Arm(Fault::Ioctl("VFIO_DEVICE_GET_INFO", 1, EIO));
  EXPECT_EQ(Device::Open(group, kEdu).error().code, EIO);
  EXPECT_TRUE(group->Detach().has_value());  // the half-open device fd was closed
}

TEST_F(VfioFaultTest, IrqEnableFailureClosesTheEventfds) {
  auto dev = OpenEdu();
  size_t fds_before = ProcessFdCount();
  faulty_.Arm(Fault::Ioctl("VFIO_DEVICE_SET_IRQS", 1, EINVAL));
  EXPECT_EQ(IrqSet::Enable(dev, kernel::kPciMsiIrqIndex, 1).error().code, EINVAL);
  EXPECT_EQ(ProcessFdCount(), fds_before);
  EXPECT_FALSE(model_.TriggerIrq(dev->fd(), kernel::kPciMsiIrqIndex, 0).value());
}

TEST_F(VfioFaultTest, RegionMmapFailureReleasesTheReservation) {
  auto dev = OpenEdu();
  faulty_.Arm(Fault::OnOp(KernelOp::kMmap, 1, ENOMEM));
  uint64_t munmaps = faulty_.Calls(KernelOp::kMunmap);
  EXPECT_EQ(RegionMapping::Map(dev, 0).error().code, ENOMEM);
  EXPECT_EQ(faulty_.Calls(KernelOp::kMunmap), munmaps + 1);
}

TEST_F(VfioFaultTest, ConfigReadFailureFailsBusMasterEnable) {
  auto dev = OpenEdu();
  faulty_.Arm(Fault::OnOp(KernelOp::kPread, 1, EIO));
  EXPECT_EQ(dev->SetBusMaster(true).error().code, EIO);
  faulty_.Clear();
  EXPECT_EQ(dev->ReadConfig16(kPciCommandOffset).value() & kPciCommandBusMaster, 0);
}

TEST_F(VfioFaultTest, FailedUnmapIsReportedAndForgotten) {
  auto dev = OpenEdu();
  auto container = dev->group()->container();
  void* buf = ::mmap(nullptr, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(buf, MAP_FAILED);
  {
    auto m = test::ScopedEntry::Map(container, {.vaddr = reinterpret_cast<uint64_t>(buf),
                                                .iova = 0x100000,
                                                .size = 1 << 20,
                                                .read = true,
                                                .write = true})
                 .value();
    faulty_.Arm(Fault::Ioctl("VFIO_IOMMU_UNMAP_DMA", 1, EIO));
    EXPECT_EQ(m.Unmap().error().code, EIO);
    EXPECT_FALSE(m.mapped());
  }  // the destructor does not try again
  EXPECT_EQ(faulty_.IoctlCalls("VFIO_IOMMU_UNMAP_DMA"), 1u);
  faulty_.Clear();
  EXPECT_EQ(container->UnmapAll().value(), uint64_t{1} << 20);
  ::munmap(buf, 1 << 20);
}

}  // namespace
}  // namespace vfiod::vfio
