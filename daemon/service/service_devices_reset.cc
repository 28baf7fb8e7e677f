// device.reset: the best reset the kernel offers, through the container that
// holds the device's group.
#include <spdlog/fmt/fmt.h>

#include <cerrno>
#include <string>

#include "journal/sink.h"
#include "service/managed_container.h"
#include "service/service.h"

namespace vfiod::service {

SResult<ResetMethod> Service::ResetDevice(const Caller& caller, const std::string& bdf) {
  constexpr const char* kOp = "device.reset";
  vfio::PciDevice dev = VFIOD_TRY(FindDevice(caller, bdf));
  std::shared_ptr<ManagedContainer> managed;
  ContainerId container = 0;
  {
    std::lock_guard lock(mu_);
    auto held = dev.iommu_group ? groups_held_.find(*dev.iommu_group) : groups_held_.end();
    if (held == groups_held_.end() || lingering_.contains(held->second)) {
      return Refuse(ErrorKind::kNotFound, ENOENT, kOp,
                    dev.bdf + "'s IOMMU group is in no container you may use");
    }
    container = held->second;
    managed = VFIOD_TRY(FindContainerLocked(caller, container, Access::kUse, kOp));
  }
  if (!managed) {  // the container is still being created
    return Refuse(ErrorKind::kBusy, EBUSY, kOp, "its container is being created");
  }
  std::lock_guard clock(managed->mu());
  if (managed->closed()) {
    return Refuse(ErrorKind::kNotFound, ENOENT, "container", "destroyed meanwhile");
  }
  Result<ResetMethod> done = managed->ResetDevice(dev.bdf);
  if (!done && done.error().code == EPERM) {
    return std::unexpected(ServiceError(ErrorKind::kPermission, done.error()));
  }
  if (!done && done.error().code == ENOTTY) {
    return std::unexpected(ServiceError(ErrorKind::kInvalidParams, done.error()));
  }
  if (!done) {
    return std::unexpected(ServiceError(done.error()));
  }
  journal::Emit({.kind = journal::Kind::kDeviceReset,
                 .message = fmt::format("{} reset ({}) by uid {} (container {})", dev.bdf,
                                        *done == ResetMethod::kFunction ? "function" : "hot",
                                        caller.identity.uid, container),
                 .uid = caller.identity.uid,
                 .container = container,
                 .bdfs = {dev.bdf}});
  return *done;
}

}  // namespace vfiod::service
