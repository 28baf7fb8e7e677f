// Device operations of the service: discovery, binding, device fds.
#include <spdlog/fmt/fmt.h>
#include <spdlog/spdlog.h>

#include <optional>

#include "journal/sink.h"
#include "service/managed_container.h"
#include "service/service.h"

namespace vfiod::service {

namespace {

DeviceId IdOf(const vfio::PciDevice& dev) { return DeviceId{dev.bdf, dev.vendor, dev.device}; }

constexpr ContainerId kUnbinding = ~ContainerId{0};  // a group whose device is being unbound

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

SResult<vfio::PciDevice> Service::BarDevice(const Caller& caller, ContainerId container,
                                            const std::string& bdf) const {
  std::optional<vfio::PciDevice> known;
  if (auto canonical = vfio::NormalizeBdf(bdf)) {
    std::lock_guard lock(mu_);
    auto slot = containers_.find(container);
    if (slot != containers_.end()) {
      auto it = slot->second.bar_devices.find(*canonical);
      if (it != slot->second.bar_devices.end()) {
        known = it->second;
      }
    }
  }
  if (!known) {
    known = VFIOD_TRY(LookupDevice(bdf));
  }
  if (auto ok = policy_.MayUseDevice(caller.identity, IdOf(*known)); !ok) {
    return std::unexpected(ServiceError(ErrorKind::kPermission, ok.error()));
  }
  return std::move(*known);
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
  v.config = ReadConfigSpace(sysfs_.root() / "bus/pci/devices" / v.pci.bdf / "config");
  if (v.permitted && v.viable && v.pci.driver == "vfio-pci") {
    v.vfio = ProbeVfio(caller, v.pci);
  }
  return v;
}

std::optional<DeviceVfioView> Service::ProbeVfio(const Caller& caller, const vfio::PciDevice& pci) {
  if (!pci.iommu_group) {  // not viable: the caller does not ask
    return std::nullopt;
  }
  std::shared_ptr<ManagedContainer> holder;
  {
    std::lock_guard lock(mu_);
    auto held = groups_held_.find(*pci.iommu_group);
    if (held == groups_held_.end()) {
      return std::nullopt;  // in no container: nothing is opened to describe it
    }
    auto c = containers_.find(held->second);
    if (c == containers_.end() || !Authorize(caller, c->second, Access::kUse, "device.info")) {
      return std::nullopt;  // lingering, being created, or someone else's
    }
    holder = c->second.managed;
  }
  if (!holder) {
    return std::nullopt;  // being created right now
  }
  // Only a user who may use the container waits for its work (a long map).
  std::lock_guard clock(holder->mu());
  if (holder->closed()) {
    return std::nullopt;
  }
  Result<DeviceVfioView> view = holder->ProbeDevice(pci.bdf);
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
  journal::Emit({.kind = journal::Kind::kDeviceBound,
                 .message = fmt::format("{} bound to vfio-pci by uid {} (was '{}')", dev.bdf,
                                        caller.identity.uid, record->previous_driver),
                 .uid = caller.identity.uid,
                 .bdfs = {dev.bdf}});
  return MakeDeviceView(caller, VFIOD_TRY(LookupDevice(dev.bdf)));
}

SResult<DeviceView> Service::UnbindDevice(const Caller& caller, const std::string& bdf) {
  vfio::PciDevice dev = VFIOD_TRY(LookupDevice(bdf));
  if (!caller.is_root()) {
    if (auto ok = policy_.MayBind(caller.identity, IdOf(dev)); !ok) {
      return std::unexpected(ServiceError(ErrorKind::kPermission, ok.error()));
    }
  }
  // Refused here, never in the kernel: Linux blocks the unbind of a device
  // whose fd is open until it closes, and would hold bind_mu_ meanwhile.
  std::optional<int> group = dev.iommu_group;
  if (group) {
    RecheckLingering();
    std::lock_guard lock(mu_);
    if (auto holder = GroupHolderLocked(*group)) {
      return Refuse(
          ErrorKind::kBusy, EBUSY, "device.unbind",
          dev.bdf + "'s IOMMU group " + std::to_string(*group) + " is held by " + *holder);
    }
    groups_held_[*group] = kUnbinding;  // no container takes it meanwhile
  }
  auto release = [&] {
    if (group) {
      std::lock_guard lock(mu_);
      groups_held_.erase(*group);
    }
  };
  if (group && dev.driver == "vfio-pci" && GroupStillHeld(*group)) {
    release();
    return Refuse(ErrorKind::kBusy, EBUSY, "device.unbind",
                  dev.bdf + "'s IOMMU group " + std::to_string(*group) +
                      " is open elsewhere (a device fd not from vfiod?)");
  }
  auto done = SysfsUnbind(dev);
  release();
  if (!done) {
    return std::unexpected(std::move(done).error());
  }
  journal::Emit({.kind = journal::Kind::kDeviceUnbound,
                 .message = fmt::format("{} unbound from '{}' by uid {}", dev.bdf, dev.driver,
                                        caller.identity.uid),
                 .uid = caller.identity.uid,
                 .bdfs = {dev.bdf}});
  return MakeDeviceView(caller, VFIOD_TRY(LookupDevice(dev.bdf)));
}

SResult<void> Service::SysfsUnbind(const vfio::PciDevice& dev) {
  std::lock_guard bind(bind_mu_);
  if (dev.driver == "vfio-pci") {
    // Undo vfio-pci: clear the override, unbind, let the native driver probe.
    vfio::BindRecord record;
    record.bdf = dev.bdf;
    VFIOD_TRY(sysfs_.Restore(record));
  } else if (!dev.driver.empty()) {
    VFIOD_TRY(sysfs_.Unbind(dev.bdf));
  }
  return {};
}

SResult<OpenedDevice> Service::OpenDevice(const Caller& caller, ContainerId container,
                                          const std::string& bdf) {
  // Declared first, so it runs last. Made only when this call opened the
  // device (its fd went to the store): the reply then waits for a state
  // record naming it, or a crash right after the reply would leave the
  // successor deaf to the device's release requests while the client holds
  // it. A refused call or a second fd of an open device writes no record.
  std::optional<ChangeNote> note;
  vfio::PciDevice dev = VFIOD_TRY(FindDevice(caller, bdf));
  std::shared_ptr<ManagedContainer> managed;
  uid_t owner = 0;
  {
    std::lock_guard lock(mu_);
    ContainerSlot* slot =
        VFIOD_TRY(ContainerForLocked(caller, container, Access::kUse, "device.open"));
    managed = slot->managed;
    owner = slot->owner_uid;
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
  // The reset (if due) and the hand-out under one hold of the container's
  // mutex: nobody else gets the device in between.
  const HandOverReset reset =
      VFIOD_TRY(ResetForHandOver(*managed, dev.bdf, caller.identity.uid, owner));
  const bool was_open = managed->HasDeviceOpen(dev.bdf);
  Result<OpenedDevice> opened = managed->OpenDevice(dev.bdf, *dev.iommu_group, caller.identity.uid);
  if (!opened) {
    return std::unexpected(ServiceError(opened.error()));
  }
  if (!was_open) {
    note.emplace(*this, true);  // flushes at return, once the container lock is released
  }
  NoteHandOver(dev.bdf, caller.identity.uid);
  {
    std::lock_guard lock(mu_);  // told of release requests (service_release.cc)
    if (containers_.contains(container)) {
      releases_[container].device_sessions[dev.bdf].insert(caller.session);
    }
  }
  opened->reset = reset;
  return std::move(*opened);
}

}  // namespace vfiod::service
