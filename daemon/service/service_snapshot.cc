// Service::SnapshotState: the service's tables as a lifecycle::StateRecord,
// the part of the state that must survive a restart of vfiod (issue 14).
#include <algorithm>
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
  lifecycle::StateRecord record;
  std::lock_guard lock(mu_);
  for (const auto& [id, slot] : containers_) {
    if (slot.managed) {
      record.containers.push_back(ContainerRecordOf(ViewLocked(slot)));
    }
  }
  ForEachMappingLocked([&](MappingId id, const MappingSlot& slot) {
    record.mappings.push_back(MappingRecordOf(SummaryLocked(id, slot)));
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
