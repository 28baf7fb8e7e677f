// The one authorization point of the service: who may see, use or manage a
// container, a mapping or a region. Every method reaches these objects
// through the functions of this file; no other code decides access.
//
// The rules (root, uid 0, may do everything to everything):
//
//   container   owner (the creating session of an unnamed container, the
//               owner uid of a named one): see, use, manage.
//               shared with the caller (its uid, its primary or a
//               supplementary group): see; use when the policy permits the
//               caller every device of the container (else kPermission);
//               manage: kPermission.
//               anyone else: kNotFound (the container's existence is not
//               leaked: the same answer as for an id nobody holds).
//   mapping     its owner (the creating session of an unnamed mapping, the
//               owner uid of a named one): see, manage (free), while its
//               container exists.
//               anyone who may see its container: see (they share one IOMMU
//               domain); manage only with manage access to the container
//               (its owner), else kPermission.
//               anyone else: kNotFound.
//   region      its session: see, use, manage. Root: see. Anyone else:
//               kNotFound (a region is a connection's handle on its own file).
//
// A container still being created is invisible to everyone.
#include <algorithm>

#include "service/managed_container.h"
#include "service/service.h"

namespace vfiod::service {

namespace {

std::unexpected<ServiceError> Hidden(const char* op, const std::string& what) {
  return Refuse(ErrorKind::kNotFound, ENOENT, op, "no " + what + " visible to this client");
}

}  // namespace

bool Service::OwnsLocked(const Caller& caller, const ContainerSlot& slot) {
  return slot.name.empty() ? slot.owner == caller.session : slot.owner_uid == caller.identity.uid;
}

bool Service::SharedWithLocked(const Caller& caller, const ContainerSlot& slot) {
  const Identity& who = caller.identity;
  if (slot.shared.users.contains(who.uid) || slot.shared.groups.contains(who.gid)) {
    return true;
  }
  return std::any_of(who.groups.begin(), who.groups.end(),
                     [&](gid_t g) { return slot.shared.groups.contains(g); });
}

SResult<void> Service::Authorize(const Caller& caller, const ContainerSlot& slot, Access access,
                                 const char* op) const {
  const std::string what = "container " + std::to_string(slot.id);
  if (!slot.managed) {
    return Hidden(op, what);  // still being created
  }
  if (caller.is_root() || OwnsLocked(caller, slot)) {
    return {};
  }
  if (!SharedWithLocked(caller, slot)) {
    return Hidden(op, what);
  }
  switch (access) {
    case Access::kSee:
      return {};
    case Access::kUse:
      for (const DeviceId& dev : slot.devices) {
        if (auto ok = policy_.MayUseDevice(caller.identity, dev); !ok) {
          return std::unexpected(ServiceError(ErrorKind::kPermission, ok.error()));
        }
      }
      return {};
    case Access::kManage:
      break;
  }
  return Refuse(ErrorKind::kPermission, EPERM, op,
                what + " is shared with this client; only its owner (uid " +
                    std::to_string(slot.owner_uid) + ") or root may do this");
}

SResult<void> Service::Authorize(const Caller& caller, const MappingSlot& slot, Access access,
                                 const char* op) const {
  auto c = containers_.find(slot.container);
  if (c == containers_.end()) {
    return Hidden(op, "such mapping");
  }
  const bool owner =
      slot.owner == 0 ? slot.owner_uid == caller.identity.uid : slot.owner == caller.session;
  if (caller.is_root() || (owner && c->second.managed)) {
    return {};
  }
  if (!Authorize(caller, c->second, Access::kSee, op)) {
    return Hidden(op, "such mapping");
  }
  if (access == Access::kSee) {
    return {};
  }
  if (Authorize(caller, c->second, Access::kManage, op)) {
    return {};
  }
  return Refuse(ErrorKind::kPermission, EPERM, op,
                "the mapping belongs to uid " + std::to_string(slot.owner_uid) +
                    "; only it, the container's owner or root may free it");
}

SResult<void> Service::Authorize(const Caller& caller, const RegionSlot& slot, Access access,
                                 const char* op) const {
  if (slot.owner == caller.session || (caller.is_root() && access == Access::kSee)) {
    return {};
  }
  return Refuse(ErrorKind::kNotFound, ENOENT, op, "no such region registered by this client");
}

SResult<Service::ContainerSlot*> Service::ContainerForLocked(const Caller& caller, ContainerId id,
                                                             Access access, const char* op) {
  auto it = containers_.find(id);
  if (it == containers_.end()) {
    return Hidden(op, "container " + std::to_string(id));
  }
  VFIOD_TRY(Authorize(caller, it->second, access, op));
  return &it->second;
}

SResult<std::shared_ptr<ManagedContainer>> Service::FindContainerLocked(const Caller& caller,
                                                                        ContainerId id,
                                                                        Access access,
                                                                        const char* op) {
  return VFIOD_TRY(ContainerForLocked(caller, id, access, op))->managed;
}

SResult<const Service::MappingSlot*> Service::MappingForLocked(const Caller& caller, MappingId id,
                                                               Access access,
                                                               const char* op) const {
  const MappingSlot* slot = FindMappingLocked(id);
  if (slot == nullptr) {
    return Hidden(op, "mapping " + std::to_string(id));
  }
  if (auto ok = Authorize(caller, *slot, access, op); !ok) {
    if (ok.error().kind == ErrorKind::kNotFound) {
      return Hidden(op, "mapping " + std::to_string(id));  // same words as a free id
    }
    return std::unexpected(std::move(ok).error());
  }
  return slot;
}

}  // namespace vfiod::service
