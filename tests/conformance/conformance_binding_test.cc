// Driver binding and VFIO (Linux 6.1 vfio_main.c, iommu.c): only devices on
// vfio-pci are in their group's device list, a group file exists while one
// of its devices is on vfio-pci, a host driver that claims DMA makes the
// group not viable, a device with no driver does not, and a host driver
// cannot claim a group a VFIO container holds. On the real kernel the tests
// bind through sysfs (as root in the VM); every driver they move is put
// back afterwards, also when an assertion fails.
#include <utility>
#include <vector>

#include "conformance_fixture.h"
#include "kernel/model_kernel.h"

namespace vfiod::conformance {
namespace {

constexpr const char* kVfioPci = "vfio-pci";

class Binding : public Conformance {
 protected:
  void TearDown() override {
    // Fds of the test body are closed by now: nothing blocks an unbind.
    for (auto it = moved_.rbegin(); it != moved_.rend(); ++it) {
      const auto& [bdf, driver] = *it;
      if (target_.DriverOf(bdf) == driver) {
        continue;
      }
      EXPECT_TRUE(target_.Unbind(bdf)) << bdf;
      if (!driver.empty()) {
        EXPECT_EQ(target_.Probe(bdf, driver).value_or("?"), driver) << "restoring " << bdf;
      }
    }
  }

  /// Unbinds `bdf` (no device fd of it may be open); TearDown rebinds it.
  void Unbind(const std::string& bdf) {
    moved_.emplace_back(bdf, target_.DriverOf(bdf));
    auto r = target_.Unbind(bdf);
    ASSERT_TRUE(r) << r.error().message();
    ASSERT_EQ(target_.DriverOf(bdf), "");
  }

  /// The driver `bdf` ends up with after `driver` probed it.
  std::string Probe(const std::string& bdf, const std::string& driver) {
    auto r = target_.Probe(bdf, driver);
    EXPECT_TRUE(r) << r.error().message();
    return r.value_or("?");
  }

  /// The other members of `bdf`'s group that are bound to a host driver.
  std::vector<std::string> HostBoundPeers(const std::string& bdf) {
    std::vector<std::string> out;
    for (const std::string& m : target_.GroupMembers(target_.GroupOf(bdf).value_or(-1))) {
      std::string driver = target_.DriverOf(m);
      if (m != bdf && !driver.empty() && driver != kVfioPci) {
        out.push_back(m);
      }
    }
    return out;
  }

  std::vector<std::pair<std::string, std::string>> moved_;  // bdf, driver before
};

TEST_F(Binding, GroupFileExistsWhileADeviceOfItIsOnVfioPci) {
  ASSERT_EQ(target_.DriverOf(device()), kVfioPci);
  ASSERT_NO_FATAL_FAILURE(Unbind(device()));
  auto gone = k_.open(GroupPath(device()), O_RDWR);
  KernelFd guard(&k_, gone.value_or(-1));
  EXPECT_EQ(Errno(gone), ENOENT);
  ASSERT_EQ(Probe(device(), kVfioPci), kVfioPci);
  KernelFd c = OpenContainer();
  KernelFd g = OpenGroup(device());
  ASSERT_TRUE(kernel::SetContainer(k_, g.get(), c.get()));
  ASSERT_TRUE(kernel::SetIommuType1v2(k_, c.get()));
  auto dev = kernel::GetDeviceFd(k_, g.get(), device());
  ASSERT_TRUE(dev) << dev.error().message();
  KernelFd d(&k_, *dev);
}

TEST_F(Binding, DeviceOffVfioPciIsNotInItsGroup) {
  KernelFd c = OpenContainer();
  KernelFd g = OpenGroup(device());
  ASSERT_TRUE(kernel::SetContainer(k_, g.get(), c.get()));
  ASSERT_TRUE(kernel::SetIommuType1v2(k_, c.get()));
  // No device fd is open, so the unbind does not wait.
  ASSERT_NO_FATAL_FAILURE(Unbind(device()));
  auto dev = kernel::GetDeviceFd(k_, g.get(), device());
  KernelFd guard(&k_, dev.value_or(-1));
  EXPECT_EQ(Errno(dev), ENODEV);
}

TEST_F(Binding, GroupWithoutHostDriversIsViable) {
  std::vector<std::string> peers = HostBoundPeers(nonviable());
  ASSERT_FALSE(peers.empty()) << "the non-viable group has no host-bound device";
  for (const std::string& peer : peers) {
    ASSERT_NO_FATAL_FAILURE(Unbind(peer));
  }
  KernelFd c = OpenContainer();
  KernelFd g = OpenGroup(nonviable());
  auto status = kernel::GetGroupStatus(k_, g.get());
  ASSERT_TRUE(status) << status.error().message();
  EXPECT_TRUE(status->viable);  // driverless devices claim no DMA
  ASSERT_TRUE(kernel::SetContainer(k_, g.get(), c.get()));
  ASSERT_TRUE(kernel::SetIommuType1v2(k_, c.get()));
  auto dev = kernel::GetDeviceFd(k_, g.get(), nonviable());
  ASSERT_TRUE(dev) << dev.error().message();
  KernelFd d(&k_, *dev);
  // Driverless peers are in the group but not in its VFIO device list.
  auto peer = kernel::GetDeviceFd(k_, g.get(), peers.front());
  KernelFd peer_guard(&k_, peer.value_or(-1));
  EXPECT_EQ(Errno(peer), ENODEV);
}

TEST_F(Binding, HostDriverCannotClaimAGroupAContainerHolds) {
  std::vector<std::string> peers = HostBoundPeers(nonviable());
  ASSERT_FALSE(peers.empty()) << "the non-viable group has no host-bound device";
  const std::string peer = peers.front();
  const std::string host_driver = target_.DriverOf(peer);
  for (const std::string& p : peers) {
    ASSERT_NO_FATAL_FAILURE(Unbind(p));
  }
  {
    KernelFd c = OpenContainer();
    KernelFd g = OpenGroup(nonviable());
    ASSERT_TRUE(kernel::SetContainer(k_, g.get(), c.get()));
    EXPECT_EQ(Probe(peer, host_driver), "");  // the probe fails: VFIO owns the group's DMA
    EXPECT_TRUE(kernel::GetGroupStatus(k_, g.get()).value_or(kernel::GroupStatus{}).viable);
  }
  // Released by the container, the group takes the host driver back and is
  // not viable again.
  ASSERT_EQ(Probe(peer, host_driver), host_driver);
  KernelFd g = OpenGroup(nonviable());
  auto status = kernel::GetGroupStatus(k_, g.get());
  ASSERT_TRUE(status) << status.error().message();
  EXPECT_FALSE(status->viable);
}

}  // namespace
}  // namespace vfiod::conformance
