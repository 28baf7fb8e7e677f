// Driver binding on the model (ModelKernel::SetDriver) and what it changes
// for VFIO: the group's device list, the group file, viability, and the
// EBUSY cases (and the unbind Linux would block). The rules the real kernel can show are also in
// the conformance suite (conformance_binding_test.cc), run in the VM.
#include <gtest/gtest.h>

#include <thread>
#include <vector>

#include "model_fixture.h"

namespace vfiod::kernel::testing {
namespace {

constexpr const char* kIvshmem = "0000:00:04.0";
constexpr const char* kLpc = "0000:00:1f.0";
constexpr const char* kAhci = "0000:00:1f.2";
constexpr const char* kSmbus = "0000:00:1f.3";

using BindingModel = ModelFixture;

TEST_F(BindingModel, DriversStartAsTheTopologySays) {
  EXPECT_EQ(k_.DriverOf(kEdu).value_or("?"), "vfio-pci");
  EXPECT_EQ(k_.DriverOf(kLpc).value_or("?"), "lpc_ich");
  EXPECT_EQ(Errno(k_.DriverOf("0000:ff:00.0")), ENODEV);
  EXPECT_EQ(Errno(k_.SetDriver("0000:ff:00.0", "")), ENODEV);
}

TEST_F(BindingModel, DeviceOffVfioPciIsNotInItsGroupUntilRebound) {
  ASSERT_TRUE(k_.SetDriver(kEdu, ""));
  EXPECT_EQ(k_.DriverOf(kEdu).value_or("?"), "");
  EXPECT_EQ(Errno(GetDeviceFd(k_, group_.get(), kEdu)), ENODEV);
  auto status = GetGroupStatus(k_, group_.get());
  ASSERT_TRUE(status);
  EXPECT_TRUE(status->container_set);
  ASSERT_TRUE(k_.SetDriver(kEdu, "vfio-pci"));
  KernelFd dev = OpenEdu();
  EXPECT_TRUE(dev.valid());
}

TEST_F(BindingModel, UnbindWithADeviceFdOpenWouldBlockAndChangesNothing) {
  KernelFd dev = OpenEdu();
  ASSERT_TRUE(dev.valid());
  EXPECT_EQ(Errno(k_.SetDriver(kEdu, "")), EWOULDBLOCK);  // Linux: blocks until the fd closes
  EXPECT_EQ(Errno(k_.SetDriver(kEdu, "e1000")), EWOULDBLOCK);
  EXPECT_EQ(k_.DriverOf(kEdu).value_or("?"), "vfio-pci");
  dev.reset();
  EXPECT_TRUE(k_.SetDriver(kEdu, ""));
}

TEST_F(BindingModel, SameDriverAgainIsANoOp) {
  KernelFd dev = OpenEdu();
  EXPECT_TRUE(k_.SetDriver(kEdu, "vfio-pci"));  // nothing to unbind: no EBUSY
}

TEST_F(BindingModel, GroupFileExistsWhileADeviceIsOnVfioPciOrTheGroupIsOpen) {
  ASSERT_TRUE(k_.SetDriver(kIvshmem, ""));
  EXPECT_EQ(Errno(k_.open(GroupPath(kIvshmemGroup), O_RDWR)), ENOENT);
  ASSERT_TRUE(k_.SetDriver(kIvshmem, "vfio-pci"));
  KernelFd g = Open(GroupPath(kIvshmemGroup));
  ASSERT_TRUE(g.valid());
  // An open group outlives its last device, empty.
  ASSERT_TRUE(k_.SetDriver(kIvshmem, ""));
  auto status = GetGroupStatus(k_, g.get());
  ASSERT_TRUE(status);
  EXPECT_TRUE(status->viable);
  g.reset();
  EXPECT_EQ(Errno(k_.open(GroupPath(kIvshmemGroup), O_RDWR)), ENOENT);
}

TEST_F(BindingModel, HostDriverMakesTheGroupNotViableAndNoDriverDoesNot) {
  KernelFd c = Open("/dev/vfio/vfio");
  KernelFd g = Open(GroupPath(kIch9Group));
  EXPECT_FALSE(GetGroupStatus(k_, g.get())->viable);
  ASSERT_TRUE(k_.SetDriver(kLpc, ""));
  EXPECT_FALSE(GetGroupStatus(k_, g.get())->viable);  // ahci still claims DMA
  EXPECT_EQ(Errno(SetContainer(k_, g.get(), c.get())), EPERM);
  ASSERT_TRUE(k_.SetDriver(kAhci, "pci-stub"));  // manages no DMA: harmless
  EXPECT_TRUE(GetGroupStatus(k_, g.get())->viable);
  ASSERT_TRUE(SetContainer(k_, g.get(), c.get()));
  ASSERT_TRUE(SetIommuType1v2(k_, c.get()));
  auto smbus = GetDeviceFd(k_, g.get(), kSmbus);
  ASSERT_TRUE(smbus) << smbus.error().message();
  KernelFd d(&k_, *smbus);
  EXPECT_EQ(Errno(GetDeviceFd(k_, g.get(), kLpc)), ENODEV);  // in the group, not on vfio-pci
  EXPECT_EQ(Errno(GetDeviceFd(k_, g.get(), kAhci)), ENODEV);
}

TEST_F(BindingModel, HostDriverCannotClaimAGroupInAContainer) {
  ASSERT_TRUE(k_.SetDriver(kIvshmem, ""));
  {
    KernelFd c = Open("/dev/vfio/vfio");
    ASSERT_TRUE(k_.SetDriver(kIvshmem, "vfio-pci"));
    KernelFd g = Open(GroupPath(kIvshmemGroup));
    ASSERT_TRUE(SetContainer(k_, g.get(), c.get()));
    ASSERT_TRUE(k_.SetDriver(kIvshmem, ""));  // no device fd: the unbind goes through
    EXPECT_EQ(Errno(k_.SetDriver(kIvshmem, "ivshmem_host")), EBUSY);
    EXPECT_EQ(k_.DriverOf(kIvshmem).value_or("?"), "");
    EXPECT_TRUE(k_.SetDriver(kIvshmem, "pci-stub"));  // manages no DMA: may bind
    EXPECT_TRUE(k_.SetDriver(kIvshmem, ""));
  }
  // The container let go of the group: a host driver binds, not viable.
  ASSERT_TRUE(k_.SetDriver(kIvshmem, "ivshmem_host"));
  ASSERT_TRUE(k_.SetDriver(kIvshmem, "vfio-pci"));  // directly: unbind, then probe
  KernelFd g = Open(GroupPath(kIvshmemGroup));
  EXPECT_TRUE(GetGroupStatus(k_, g.get())->viable);
}

TEST_F(BindingModel, SetDriverIsSafeFromManyThreads) {
  std::vector<std::thread> threads;
  for (const char* bdf : {kIvshmem, kLpc, kAhci}) {
    threads.emplace_back([this, bdf] {
      for (int i = 0; i < 200; ++i) {
        EXPECT_TRUE(k_.SetDriver(bdf, i % 2 == 0 ? "" : "vfio-pci"));
      }
    });
  }
  for (auto& t : threads) {
    t.join();
  }
  EXPECT_EQ(k_.DriverOf(kLpc).value_or("?"), "vfio-pci");
  KernelFd c = Open("/dev/vfio/vfio");
  KernelFd g = Open(GroupPath(kIch9Group));
  EXPECT_TRUE(GetGroupStatus(k_, g.get())->viable);  // every member on vfio-pci
}

}  // namespace
}  // namespace vfiod::kernel::testing
