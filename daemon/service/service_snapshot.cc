// Service::SnapshotState: the service's tables as a lifecycle::StateRecord,
// the part of the state that must survive a restart of vfiod (issue 14).
#include <algorithm>
#include <mutex>
#include <string>

#include "service/managed_container.h"
#include "service/service.h"

namespace vfiod::service {

namespace {

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

lifecycle::MappingRecord MappingRecordOf(const MappingView& view) {
  lifecycle::MappingRecord r;
  r.id = view.id;
  r.container = view.container;
  r.iova = view.iova;
  r.size = view.size;
  r.backing = view.backing;
  r.mmio = view.mmio;
  r.fd_name = view.mmio ? std::string() : "m-" + std::to_string(view.id);
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
  for (const auto& [id, slot] : containers_) {
    if (slot.managed) {
      record.containers.push_back(ContainerRecordOf(ViewLocked(slot)));
    }
  }
  ForEachMappingLocked([&](MappingId id, const MappingSlot& slot) {
    if (!containers_.contains(slot.container)) {
      return;  // its container is being torn down
    }
    if (auto view = Describe(RefLocked(id, slot))) {
      record.mappings.push_back(MappingRecordOf(*view));
    }
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
  }
}

}  // namespace vfiod::service
