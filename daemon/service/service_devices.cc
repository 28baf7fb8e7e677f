// Device operations of the service: discovery, binding, device fds.
#include <spdlog/spdlog.h>

#include "service/managed_container.h"
#include "service/service.h"

namespace vfiod::service {

namespace {

DeviceId IdOf(const vfio::PciDevice& dev) { return DeviceId{dev.bdf, dev.vendor, dev.device}; }

constexpr ContainerId kProbeHolder = ~ContainerId{0};  // a group held by a device.info probe

}  // namespace

SResult<vfio::PciDevice> Service::LookupDevice(const std::string& bdf) const {
  auto canonical = vfio::NormalizeBdf(bdf);
  if (!canonical) {
    return Refuse(ErrorKind::kInvalidParams, EINVAL, "bdf",
                  "'" + bdf + "' is not a PCI address (dddd:bb:dd.f)");
  }
  auto dev = sysfs_.Get(*canonical);
  if (!dev) {
    if (dev.error().code == ENODEV || dev.error().code == ENOENT) {
      return Refuse(ErrorKind::kNotFound, ENODEV, "device", "no PCI device " + *canonical);
    }
    return std::unexpected(ServiceError(dev.error()));
  }
  return *dev;
}

SResult<vfio::PciDevice> Service::FindDevice(const Caller& caller, const std::string& bdf) const {
  vfio::PciDevice dev = VFIOD_TRY(LookupDevice(bdf));
  if (auto ok = policy_.MayUseDevice(caller.identity, IdOf(dev)); !ok) {
    return std::unexpected(ServiceError(ErrorKind::kPermission, ok.error()));
  }
  return dev;
}

DeviceView Service::MakeDeviceView(const Caller& caller, vfio::PciDevice pci) const {
  DeviceView v;
  v.viable = pci.group_viable();
  v.permitted = policy_.MayUseDevice(caller.identity, IdOf(pci)).has_value();
  v.pci = std::move(pci);
  return v;
}

SResult<std::vector<DeviceView>> Service::ListDevices(const Caller& caller) {
  auto devices = sysfs_.List();
  if (!devices) {
    return std::unexpected(ServiceError(devices.error()));
  }
  std::vector<DeviceView> out;
  out.reserve(devices->size());
  for (auto& dev : *devices) {
    out.push_back(MakeDeviceView(caller, std::move(dev)));
  }
  return out;
}

SResult<DeviceView> Service::DeviceInfo(const Caller& caller, const std::string& bdf) {
  DeviceView v = MakeDeviceView(caller, VFIOD_TRY(LookupDevice(bdf)));
  if (v.permitted && v.viable && v.pci.driver == "vfio-pci") {
    v.vfio = ProbeVfio(caller, v.pci);
  }
  return v;
}

std::optional<DeviceVfioView> Service::ProbeVfio(const Caller& caller, const vfio::PciDevice& pci) {
  if (!pci.iommu_group) {  // not viable: the caller does not ask
    return std::nullopt;
  }
  const int group = *pci.iommu_group;
  std::shared_ptr<ManagedContainer> holder;
  bool holder_is_callers = false;
  {
    std::lock_guard lock(mu_);
    auto held = groups_held_.find(group);
    if (held != groups_held_.end()) {
      auto c = containers_.find(held->second);
      if (c == containers_.end() || !c->second.managed) {
        return std::nullopt;  // being created or probed right now
      }
      holder = c->second.managed;
      holder_is_callers = CanAccessLocked(caller, c->second);
    } else {
      groups_held_[group] = kProbeHolder;
    }
  }
  Result<DeviceVfioView> view = Fail(ENOENT, "probe");
  if (holder) {
    // The caller may wait for work on a container it can use, never for
    // another user's (a long map there): then the details are left out.
    std::unique_lock clock(holder->mu(), std::defer_lock);
    if (holder_is_callers) {
      clock.lock();
    } else if (!clock.try_lock()) {
      spdlog::debug("device.info {}: its container is busy; no VFIO details", pci.bdf);
      return std::nullopt;
    }
    if (!holder->closed()) {
      view = holder->ProbeDevice(pci.bdf);
    }
  } else {
    // Nobody has the group: look through a short-lived container of our own.
    auto temp = ManagedContainer::Create(*kernel_, sysfs_, 0, {group}, config_.limits);
    if (temp) {
      std::lock_guard clock((*temp)->mu());
      view = (*temp)->ProbeDevice(pci.bdf);
      (*temp)->Close();
    } else {
      view = std::unexpected(temp.error());
    }
    std::lock_guard lock(mu_);
    groups_held_.erase(group);
  }
  if (!view) {
    spdlog::debug("device.info {}: no VFIO details: {}", pci.bdf, view.error().message());
    return std::nullopt;
  }
  return *view;
}

SResult<DeviceView> Service::BindDevice(const Caller& caller, const std::string& bdf) {
  vfio::PciDevice dev = VFIOD_TRY(LookupDevice(bdf));
  if (!caller.is_root()) {
    if (auto ok = policy_.MayBind(caller.identity, IdOf(dev)); !ok) {
      return std::unexpected(ServiceError(ErrorKind::kPermission, ok.error()));
    }
  }
  std::lock_guard bind(bind_mu_);
  auto record = sysfs_.BindVfio(dev.bdf);
  if (!record) {
    return std::unexpected(ServiceError(record.error()));
  }
  spdlog::info("{} bound to vfio-pci by uid {} (was '{}')", dev.bdf, caller.identity.uid,
               record->previous_driver);
  return MakeDeviceView(caller, VFIOD_TRY(LookupDevice(dev.bdf)));
}

SResult<DeviceView> Service::UnbindDevice(const Caller& caller, const std::string& bdf) {
  vfio::PciDevice dev = VFIOD_TRY(LookupDevice(bdf));
  if (!caller.is_root()) {
    if (auto ok = policy_.MayBind(caller.identity, IdOf(dev)); !ok) {
      return std::unexpected(ServiceError(ErrorKind::kPermission, ok.error()));
    }
  }
  if (dev.iommu_group) {
    std::lock_guard lock(mu_);
    if (groups_held_.contains(*dev.iommu_group)) {
      return Refuse(ErrorKind::kBusy, EBUSY, "device.unbind",
                    "the device's IOMMU group is in a container; destroy it first");
    }
  }
  std::lock_guard bind(bind_mu_);
  if (dev.driver == "vfio-pci") {
    // Undo vfio-pci: clear the override, unbind, let the native driver probe.
    vfio::BindRecord record;
    record.bdf = dev.bdf;
    VFIOD_TRY(sysfs_.Restore(record));
  } else if (!dev.driver.empty()) {
    VFIOD_TRY(sysfs_.Unbind(dev.bdf));
  }
  spdlog::info("{} unbound from '{}' by uid {}", dev.bdf, dev.driver, caller.identity.uid);
  return MakeDeviceView(caller, VFIOD_TRY(LookupDevice(dev.bdf)));
}

SResult<OpenedDevice> Service::OpenDevice(const Caller& caller, ContainerId container,
                                          const std::string& bdf) {
  vfio::PciDevice dev = VFIOD_TRY(FindDevice(caller, bdf));
  std::shared_ptr<ManagedContainer> managed;
  {
    std::lock_guard lock(mu_);
    managed = VFIOD_TRY(FindContainerLocked(caller, container));
  }
  const auto& groups = managed->groups();
  if (!dev.iommu_group ||
      std::find(groups.begin(), groups.end(), *dev.iommu_group) == groups.end()) {
    return Refuse(ErrorKind::kInvalidParams, EINVAL, "device.open",
                  dev.bdf + "'s IOMMU group is not in container " + std::to_string(container));
  }
  std::lock_guard clock(managed->mu());
  if (managed->closed()) {
    return Refuse(ErrorKind::kNotFound, ENOENT, "container", "destroyed meanwhile");
  }
  return managed->OpenDevice(dev.bdf);
}

}  // namespace vfiod::service
