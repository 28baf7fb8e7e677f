// Container operations of the service: create, attach (by owner and name),
// share, list, info, destroy. Access goes through Authorize (service_access.cc).
#include <spdlog/fmt/fmt.h>
#include <spdlog/spdlog.h>

#include <algorithm>

#include "journal/user_budget.h"
#include "lifecycle/stored_fds.h"
#include "service/events.h"
#include "service/managed_container.h"
#include "service/service.h"

namespace vfiod::service {

namespace {

// How many entries `have` holds once `add`'s are in (duplicates count once).
template <typename Id>
size_t UnionSize(const std::set<Id>& have, const std::set<Id>& add) {
  return have.size() + static_cast<size_t>(std::count_if(
                           add.begin(), add.end(), [&](Id id) { return !have.contains(id); }));
}

// kQuota unless the container's share list, with `add`'s users and groups
// in, stays within ShareList::kMaxEntries of each. Nothing changes either way.
SResult<void> CheckShareFits(const ShareList& have, const ShareList& add, ContainerId container,
                             const char* op) {
  const size_t users = UnionSize(have.users, add.users);
  const size_t groups = UnionSize(have.groups, add.groups);
  if (users <= ShareList::kMaxEntries && groups <= ShareList::kMaxEntries) {
    return {};
  }
  const bool too_many_users = users > ShareList::kMaxEntries;
  return Refuse(
      ErrorKind::kQuota, EDQUOT, op,
      fmt::format("container {} would be shared with {} {} (limit {} {}): unshare "
                  "some first",
                  container, too_many_users ? users : groups, too_many_users ? "users" : "groups",
                  ShareList::kMaxEntries, too_many_users ? "users" : "groups"));
}

}  // namespace

ContainerView Service::ViewLocked(const ContainerSlot& slot) const {
  ContainerView v;
  v.id = slot.id;
  v.name = slot.name;
  v.owner_uid = slot.owner_uid;
  v.shared = slot.shared;
  v.groups = slot.managed->groups();
  v.iommu = slot.managed->iommu_info();
  v.extensions = slot.managed->extensions();
  const dma::SpaceUsage usage = slot.managed->usage();
  v.mappings = usage.mappings;
  v.mapped_bytes = usage.bytes;
  v.dma_entries_used = usage.entries;
  return v;
}

SResult<ContainerView> Service::CreateContainer(const Caller& caller,
                                                const std::vector<std::string>& bdfs,
                                                const std::string& name, const ShareList& share) {
  ChangeNote note{*this};
  if (bdfs.empty()) {
    return Refuse(ErrorKind::kInvalidParams, EINVAL, "container.create",
                  "devices: at least one device is needed");
  }
  if (bdfs.size() > kMaxContainerDevices) {
    return Refuse(ErrorKind::kInvalidParams, E2BIG, "container.create",
                  fmt::format("devices: {} named, at most {} in one container", bdfs.size(),
                              kMaxContainerDevices));
  }
  std::vector<int> groups;
  uint64_t members = 0;  // of those groups, as sysfs listed them with the devices
  std::vector<DeviceId> devices;
  for (const auto& bdf : bdfs) {
    vfio::PciDevice dev = VFIOD_TRY(FindDevice(caller, bdf));
    if (!dev.iommu_group) {
      return Refuse(ErrorKind::kInvalidParams, ENODEV, "container.create",
                    dev.bdf + " has no IOMMU group (is the IOMMU enabled?)");
    }
    if (std::any_of(devices.begin(), devices.end(),
                    [&](const DeviceId& d) { return d.bdf == dev.bdf; })) {
      return Refuse(ErrorKind::kInvalidParams, EINVAL, "container.create",
                    "devices: " + dev.bdf + " is named twice");
    }
    if (std::find(groups.begin(), groups.end(), *dev.iommu_group) == groups.end()) {
      groups.push_back(*dev.iommu_group);
      members += dev.group_members.size();
    }
    devices.push_back(DeviceId{dev.bdf, dev.vendor, dev.device});
  }
  RecheckLingering();  // a group a closed device fd held is free again
  const uint64_t stored_fds = ContainerStoredFds(groups.size(), members);
  FdBudget::Ticket ticket;  // given back on every refusal below
  ContainerId id = 0;
  {
    std::lock_guard lock(mu_);
    if (!name.empty()) {
      for (const auto& [cid, slot] : containers_) {
        if (slot.name == name && slot.owner_uid == caller.identity.uid) {
          return Refuse(ErrorKind::kBusy, EEXIST, "container.create",
                        "you have a container named '" + name + "' already");
        }
      }
    }
    VFIOD_TRY(ReserveLocked(caller, 0, 0, 1));  // quota first, as before the groups
    for (int g : groups) {
      if (auto holder = GroupHolderLocked(g)) {
        UnreserveLocked(caller.identity.uid, 0, 0, 1);
        return Refuse(ErrorKind::kBusy, EBUSY, "container.create",
                      "IOMMU group " + std::to_string(g) + " is held by " + *holder);
      }
    }
    auto charged = ChargeStoredFds(caller, stored_fds, "container.create");
    if (!charged) {
      UnreserveLocked(caller.identity.uid, 0, 0, 1);
      return std::unexpected(std::move(charged).error());
    }
    ticket = std::move(*charged);
    id = next_id_++;
    for (int g : groups) {
      groups_held_[g] = id;
    }
    // A placeholder keeps the name and groups taken while the container is built.
    containers_[id] = ContainerSlot{id,    name,    caller.session,    caller.identity.uid,
                                    share, nullptr, std::move(devices)};
  }
  auto managed = ManagedContainer::Create(*kernel_, sysfs_, id, groups, config_.limits);
  ContainerSlot orphan;
  std::optional<ContainerView> created;
  std::shared_ptr<ManagedContainer> store;
  {
    std::lock_guard lock(mu_);
    if (!managed) {
      for (int g : groups) {
        groups_held_.erase(g);
      }
      containers_.erase(id);
      UnreserveLocked(caller.identity.uid, 0, 0, 1);
      return std::unexpected(ServiceError(managed.error()));
    }
    ContainerSlot& slot = containers_[id];
    slot.managed = std::move(*managed);
    ticket.Assign(lifecycle::ContainerFdName(id));  // given back by RemoveContainerFds
    if (sessions_.contains(caller.session) || !name.empty()) {
      journal::Emit({.kind = journal::Kind::kContainerCreated,
                     .message = fmt::format("container {} created by uid {} ({} groups){}{}", id,
                                            caller.identity.uid, groups.size(),
                                            name.empty() ? "" : ", named " + name,
                                            share.empty() ? "" : ", shared"),
                     .uid = caller.identity.uid,
                     .session = caller.session,
                     .container = id,
                     .bdfs = BdfsOf(slot.devices)});
      created = ViewLocked(slot);
      store = slot.managed;
    } else {
      // The client went away while the container was built: nobody can use it.
      orphan = std::move(slot);
      containers_.erase(id);
    }
  }
  if (created) {
    StoreContainerFd(*store);
    WatchRequests(*store);
    return *created;
  }
  Teardown(orphan);
  return Refuse(ErrorKind::kNotFound, ECONNRESET, "container.create", "the session closed");
}

SResult<ContainerView> Service::AttachContainer(const Caller& caller, const std::string& name,
                                                std::optional<uid_t> owner) {
  const uid_t of = owner.value_or(caller.identity.uid);
  std::lock_guard lock(mu_);
  auto it = std::find_if(containers_.begin(), containers_.end(), [&](const auto& c) {
    return !c.second.name.empty() && c.second.name == name && c.second.owner_uid == of;
  });
  auto missing = Refuse(ErrorKind::kNotFound, ENOENT, "container.attach",
                        "uid " + std::to_string(of) + " has no container named '" + name +
                            "' visible to this client");
  if (it == containers_.end()) {
    return missing;
  }
  if (auto ok = Authorize(caller, it->second, Access::kUse, "container.attach"); !ok) {
    return ok.error().kind == ErrorKind::kNotFound ? missing : std::unexpected(ok.error());
  }
  return ViewLocked(it->second);
}

SResult<ContainerView> Service::ShareContainer(const Caller& caller, ContainerId container,
                                               const ShareList& who, bool share) {
  const char* op = share ? "container.share" : "container.unshare";
  ChangeNote note{*this, true};  // no own record carries it: the reply waits for the record
  std::lock_guard lock(mu_);
  ContainerSlot* slot = VFIOD_TRY(ContainerForLocked(caller, container, Access::kManage, op));
  if (share) {
    VFIOD_TRY(CheckShareFits(slot->shared, who, container, op));
  }
  for (uid_t u : who.users) {
    share ? (void)slot->shared.users.insert(u) : (void)slot->shared.users.erase(u);
  }
  for (gid_t g : who.groups) {
    share ? (void)slot->shared.groups.insert(g) : (void)slot->shared.groups.erase(g);
  }
  journal::LogFor(caller.identity.uid, journal::Level::kInfo,
                  "container {}: {} {} users, {} groups (by uid {})", container,
                  share ? "shared with" : "unshared from", who.users.size(), who.groups.size(),
                  caller.identity.uid);
  return ViewLocked(*slot);
}

std::vector<ContainerView> Service::ListContainers(const Caller& caller) const {
  std::lock_guard lock(mu_);
  std::vector<ContainerView> out;
  for (const auto& [id, slot] : containers_) {
    if (Authorize(caller, slot, Access::kSee, "container.list")) {
      out.push_back(ViewLocked(slot));
    }
  }
  return out;
}

SResult<std::pair<ContainerView, std::vector<MappingView>>> Service::ContainerInfo(
    const Caller& caller, ContainerId container) {
  std::vector<MappingRef> refs;
  {
    std::lock_guard lock(mu_);
    VFIOD_TRY(FindContainerLocked(caller, container, Access::kSee, "container.info"));
    refs = VisibleMappingsLocked(caller, container);
  }
  std::vector<MappingView> maps = DescribeAll(refs);
  std::lock_guard lock(mu_);
  auto it = containers_.find(container);
  if (it == containers_.end() || !it->second.managed) {
    return Refuse(ErrorKind::kNotFound, ENOENT, "container.info", "destroyed meanwhile");
  }
  return std::make_pair(ViewLocked(it->second), std::move(maps));
}

SResult<uint64_t> Service::DestroyContainer(const Caller& caller, ContainerId container) {
  ChangeNote note{*this};
  ContainerSlot slot;
  {
    std::lock_guard lock(mu_);
    ContainerSlot* found =
        VFIOD_TRY(ContainerForLocked(caller, container, Access::kManage, "container.destroy"));
    slot = std::move(*found);
    containers_.erase(container);
  }
  return Teardown(slot);
}

}  // namespace vfiod::service
