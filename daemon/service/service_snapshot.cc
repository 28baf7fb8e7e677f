// Service::SnapshotState: the service's tables as a lifecycle::StateRecord,
// the part of the state that must survive a restart of vfiod (issue 14).
#include <algorithm>
#include <memory>
#include <mutex>
#include <set>
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
  // The mappings are the engine's records: every live container's mutex is
  // held (the lock order allows them before mu_), so the index, the engine
  // and the charges are read at one instant. A container created between the
  // two steps starts the collection over.
  std::vector<std::shared_ptr<ManagedContainer>> live;
  std::vector<std::unique_lock<std::mutex>> held;
  std::unique_lock lock(mu_);
  for (;;) {
    std::vector<std::shared_ptr<ManagedContainer>> now;
    for (const auto& [id, slot] : containers_) {
      if (slot.managed) {
        now.push_back(slot.managed);
      }
    }
    if (now == live) {
      break;
    }
    lock.unlock();
    held.clear();
    live = std::move(now);
    for (const auto& managed : live) {
      held.emplace_back(managed->mu());
    }
    lock.lock();
  }
  lifecycle::StateRecord record;
  record.next_id = next_id_;
  record.mapping_generation = std::max<uint32_t>(mapping_generation_floor_, 1);
  for (const MappingSlot& slot : mapping_slots_) {
    record.mapping_generation = std::max(record.mapping_generation, slot.generation + 1);
  }
  // An unnamed object is recorded with its session's resume token; one
  // whose session is gone is being torn down, and is left out.
  auto token_of = [&](SessionId owner) {
    auto session = sessions_.find(owner);
    return session == sessions_.end() ? std::string() : session->second.token;
  };
  std::set<ContainerId> recorded;
  for (const auto& [id, slot] : containers_) {
    if (!slot.managed) {
      continue;
    }
    lifecycle::ContainerRecord c = ContainerRecordOf(ViewLocked(slot));
    if (slot.name.empty() && (c.session = token_of(slot.owner)).empty()) {
      continue;
    }
    record.containers.push_back(std::move(c));
    recorded.insert(id);
  }
  ForEachMappingLocked([&](MappingId id, const MappingSlot& slot) {
    auto container = containers_.find(slot.container);
    if (!recorded.contains(slot.container) || (slot.owner != 0 && token_of(slot.owner).empty())) {
      return;  // its container or session is being torn down
    }
    auto view = Describe(RefLocked(id, slot));
    if (!view) {
      return;
    }
    lifecycle::MappingRecord m = MappingRecordOf(*view);
    m.session = slot.owner != 0 ? token_of(slot.owner) : std::string();
    // A BAR is not re-pointable (no stored device fd): it has no entries. An
    // anonymous backing, or entries that do not tile the mapping, leave the
    // fd name empty: such a mapping is released on restart.
    bool keep = false;
    if (!m.mmio) {
      auto kept = container->second.managed->Keepable(slot.engine_id);
      if (kept && kept->fd >= 0 && Tiles(kept->entries, m.iova, m.size)) {
        for (const dma::AdoptEntry& e : kept->entries) {
          m.entries.push_back({e.iova, e.size, e.offset});
        }
        keep = true;
      }
    }
    if (!keep) {
      m.fd_name.clear();
    }
    record.mappings.push_back(std::move(m));
  });
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
