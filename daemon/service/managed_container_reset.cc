// ManagedContainer::ResetDevice: function reset, else a PCI hot reset with
// the group fds only vfiod holds.
#include <algorithm>
#include <cerrno>
#include <string>
#include <vector>

#include "kernel/vfio_api.h"
#include "service/managed_container_state.h"

namespace vfiod::service {
namespace {

constexpr const char* kOp = "device.reset";

/// The fd of each group the hot reset affects, once each; EPERM naming the
/// first affected device whose group is not among `groups`.
Result<std::vector<int>> GroupFdsFor(const std::vector<kernel::HotResetDevice>& affected,
                                     const std::vector<std::shared_ptr<vfio::Group>>& groups,
                                     const std::string& bdf, ContainerId id) {
  std::vector<int> fds;
  for (const kernel::HotResetDevice& d : affected) {
    auto it = std::find_if(groups.begin(), groups.end(),
                           [&](const auto& g) { return g->number() == static_cast<int>(d.group); });
    if (it == groups.end()) {
      return Fail(EPERM, kOp,
                  "a hot reset of " + bdf + " also resets " + d.bdf + " in IOMMU group " +
                      std::to_string(d.group) + ", which is not in container " +
                      std::to_string(id));
    }
    if (std::find(fds.begin(), fds.end(), (*it)->fd()) == fds.end()) {
      fds.push_back((*it)->fd());
    }
  }
  return fds;
}

}  // namespace

Result<ResetMethod> ManagedContainer::ResetDevice(const std::string& bdf) {
  auto device = VFIOD_TRY(DeviceFor(bdf));
  if (device->info().can_reset()) {
    VFIOD_TRY(device->Reset());
    return ResetMethod::kFunction;
  }
  auto affected = kernel::GetHotResetInfo(device->kernel(), device->fd());
  if (!affected && affected.error().code == ENODEV) {
    return Fail(ENOTTY, kOp,
                bdf + " has no function reset, and neither its slot nor its bus can be reset");
  }
  if (!affected) {
    return std::unexpected(affected.error());
  }
  std::vector<int> fds = VFIOD_TRY(GroupFdsFor(*affected, state_->groups, bdf, id_));
  VFIOD_TRY(kernel::HotReset(device->kernel(), device->fd(), fds));
  return ResetMethod::kHot;
}

}  // namespace vfiod::service
