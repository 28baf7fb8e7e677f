// Service::SnapshotState: the service's tables as a lifecycle::StateRecord,
// the part of the state that must survive a restart of vfiod (issue 14).
#include <algorithm>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "service/managed_container.h"
#include "service/service.h"

namespace vfiod::service {

namespace {

std::string GroupFdName(ContainerId id, int group) {
  return "g-" + std::to_string(id) + "-" + std::to_string(group);
}

std::string MappingFdName(MappingId id) { return "m-" + std::to_string(id); }

lifecycle::ContainerRecord ContainerRecordOf(const ContainerView& view) {
  lifecycle::ContainerRecord r;
  r.id = view.id;
  r.name = view.name;
  r.owner_uid = view.owner_uid;
  r.shared_users.assign(view.shared.users.begin(), view.shared.users.end());  // sets: sorted
  r.shared_groups.assign(view.shared.groups.begin(), view.shared.groups.end());
  r.groups = view.groups;
  std::sort(r.groups.begin(), r.groups.end());
  r.groups.erase(std::unique(r.groups.begin(), r.groups.end()), r.groups.end());
  r.fd_name = "c-" + std::to_string(view.id);
  return r;
}

/// Whether `entries` tile [iova, iova + size) exactly (what the record's
/// decoder requires; a scatter list with gaps between its IOVAs does not).
bool Tiles(const std::vector<dma::AdoptEntry>& entries, uint64_t iova, uint64_t size) {
  uint64_t at = iova;
  for (const dma::AdoptEntry& e : entries) {
    if (e.iova != at) {
      return false;
    }
    at += e.size;
  }
  return !entries.empty() && at == iova + size;
}

lifecycle::MappingRecord MappingRecordOf(const MappingView& view) {
  lifecycle::MappingRecord r;
  r.id = view.id;
  r.container = view.container;
  r.iova = view.iova;
  r.size = view.size;
  r.backing = view.backing;
  r.mmio = view.mmio;
  r.fd_name = view.mmio ? std::string() : MappingFdName(view.id);
  r.owner_uid = view.owner_uid;
  r.name = view.name;
  return r;
}

}  // namespace

lifecycle::StateRecord Service::SnapshotState() const {
  lifecycle::StateRecord record;
  // The kernel entries come from each container's engine, under its mutex,
  // which may not be taken under mu_: the tables first, then the entries.
  std::map<ContainerId, std::shared_ptr<ManagedContainer>> managed;
  std::vector<std::pair<size_t, uint64_t>> engine_ids;  // record.mappings index, engine id
  {
    std::lock_guard lock(mu_);
    for (const auto& [id, slot] : containers_) {
      if (slot.managed) {
        record.containers.push_back(ContainerRecordOf(ViewLocked(slot)));
        managed[id] = slot.managed;
      }
    }
    ForEachMappingLocked([&](MappingId id, const MappingSlot& slot) {
      engine_ids.emplace_back(record.mappings.size(), slot.engine_id);
      record.mappings.push_back(MappingRecordOf(SummaryLocked(id, slot)));
    });
  }
  for (auto [index, engine_id] : engine_ids) {
    lifecycle::MappingRecord& m = record.mappings[index];
    auto it = managed.find(m.container);
    if (it == managed.end() || m.mmio) {
      continue;  // a BAR is not re-pointable (no stored device fd): no entries
    }
    std::lock_guard clock(it->second->mu());
    auto kept = it->second->Keepable(engine_id);
    if (!kept || kept->fd < 0 || !Tiles(kept->entries, m.iova, m.size)) {
      m.fd_name.clear();  // freed meanwhile, anonymous, or not tiling: released on restart
      continue;
    }
    for (const dma::AdoptEntry& e : kept->entries) {
      m.entries.push_back({e.iova, e.size, e.offset});
    }
  }
  std::lock_guard lock(mu_);
  for (const auto& [uid, usage] : usage_) {
    if (usage.locked_bytes == 0 && usage.mappings == 0 && usage.containers == 0) {
      continue;
    }
    lifecycle::OwnerRecord owner;
    owner.uid = uid;
    owner.locked_bytes = usage.locked_bytes;
    owner.mappings = usage.mappings;
    owner.containers = usage.containers;
    record.owners.push_back(owner);
  }
  return record;
}

void Service::StoreContainerFd(ManagedContainer& managed) {
  if (!fd_store_.store) {
    return;
  }
  std::lock_guard clock(managed.mu());
  if (int fd = managed.container_fd(); fd >= 0) {  // destroyed already: nothing to keep
    fd_store_.store("c-" + std::to_string(managed.id()), fd);
    // Closing a group fd detaches it, and the last one takes the IOMMU
    // domain with every mapping: the groups must outlive vfiod too.
    for (auto [group, group_fd] : managed.group_fds()) {
      fd_store_.store(GroupFdName(managed.id(), group), group_fd);
    }
  }
}

void Service::RemoveContainerFds(ContainerId id, const std::vector<int>& groups) {
  if (!fd_store_.remove) {
    return;
  }
  fd_store_.remove("c-" + std::to_string(id));
  for (int group : groups) {
    fd_store_.remove(GroupFdName(id, group));
  }
}

void Service::StoreMappingFd(ManagedContainer& managed, MappingId id, uint64_t engine_id) {
  if (!fd_store_.store) {
    return;
  }
  if (auto kept = managed.Keepable(engine_id); kept && kept->fd >= 0) {
    fd_store_.store(MappingFdName(id), kept->fd);
  }
}

void Service::RemoveMappingFd(MappingId id) {
  if (fd_store_.remove) {
    fd_store_.remove(MappingFdName(id));
  }
}

}  // namespace vfiod::service
