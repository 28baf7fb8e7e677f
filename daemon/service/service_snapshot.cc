// Service::SnapshotState: the service's tables as a lifecycle::StateRecord,
// the part of the state that must survive a restart of vfiod (issue 14).
#include <spdlog/spdlog.h>

#include <algorithm>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "lifecycle/object_record.h"
#include "lifecycle/stored_fds.h"
#include "service/managed_container.h"
#include "service/service.h"

namespace vfiod::service {

namespace {

using lifecycle::ContainerFdName;
using lifecycle::MappingFdName;
using lifecycle::RegionFdName;

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
  r.fd_name = ContainerFdName(view.id);
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
  std::set<ContainerId> recorded;
  for (const auto& [id, slot] : containers_) {
    if (slot.managed) {
      if (auto c = ContainerRecordLocked(slot)) {
        record.containers.push_back(std::move(*c));
        recorded.insert(id);
      }
    }
  }
  std::set<RegionId> regions;
  for (const auto& [id, stored] : stored_regions_) {
    if (auto g = RegionRecordLocked(id)) {
      record.regions.push_back(std::move(*g));
      regions.insert(id);
    }
  }
  ForEachMappingLocked([&](MappingId id, const MappingSlot& slot) {
    if (!recorded.contains(slot.container) ||
        (slot.region != 0 && !regions.contains(slot.region))) {
      return;  // its container is being torn down, or its region's fd was not stored
    }
    if (auto m = MappingRecordLocked(id, slot, *containers_.at(slot.container).managed)) {
      record.mappings.push_back(std::move(*m));
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

std::optional<lifecycle::ContainerRecord> Service::ContainerRecordLocked(
    const ContainerSlot& slot) const {
  lifecycle::ContainerRecord c = ContainerRecordOf(ViewLocked(slot));
  if (slot.managed) {
    for (const ManagedContainer::HeldDevice& d : slot.managed->held_devices()) {
      c.devices.push_back({d.bdf, d.group, lifecycle::DeviceFdName(slot.id, d.bdf)});
    }
  }
  if (!slot.name.empty()) {
    return c;
  }
  // An unnamed container is recorded with its session's resume token; one
  // whose session is gone is being torn down, and is left out.
  auto session = sessions_.find(slot.owner);
  if (session == sessions_.end()) {
    return std::nullopt;
  }
  c.session = session->second.token;
  return c;
}

std::optional<lifecycle::MappingRecord> Service::MappingRecordLocked(
    MappingId id, const MappingSlot& slot, const ManagedContainer& managed) const {
  std::string token;
  if (slot.owner != 0) {
    auto session = sessions_.find(slot.owner);
    if (session == sessions_.end()) {
      return std::nullopt;  // being torn down with its session
    }
    token = session->second.token;
  }
  auto view = Describe(RefLocked(id, slot));
  if (!view) {
    return std::nullopt;
  }
  lifecycle::MappingRecord m = MappingRecordOf(*view);
  m.session = std::move(token);
  // Memory is taken over from its stored fd, a slice of a region from the
  // region's, a BAR from its device (opened again through the container's
  // groups: no fd of its own is stored). An anonymous backing, a BAR of
  // unknown origin, or entries that do not tile the mapping leave no
  // entries: such a mapping is released on restart.
  std::optional<ManagedContainer::BarSource> bar;
  if (m.mmio && (bar = managed.BarOf(slot.engine_id))) {
    m.bar_bdf = bar->bdf;
    m.bar_index = bar->index;
  }
  if (slot.region != 0) {
    m.region = slot.region;
    m.fd_name.clear();
  }
  auto kept = managed.Keepable(slot.engine_id);
  if (kept && (m.mmio ? bar.has_value() : kept->fd >= 0) && Tiles(kept->entries, m.iova, m.size)) {
    for (const dma::AdoptEntry& e : kept->entries) {
      m.entries.push_back({e.iova, e.size, e.offset});
    }
    return m;
  }
  m.fd_name.clear();
  return m;
}

std::optional<lifecycle::RegionRecord> Service::RegionRecordLocked(RegionId id) const {
  auto stored = stored_regions_.find(id);
  if (stored == stored_regions_.end()) {
    return std::nullopt;
  }
  std::shared_ptr<const dma::Backing> backing = stored->second.backing.lock();
  if (!backing) {
    return std::nullopt;  // released: nobody holds the memory any more
  }
  lifecycle::RegionRecord g;
  g.id = id;
  g.owner_uid = stored->second.owner_uid;
  // Registered by a live session: that session's token. Else it is kept
  // alive by its slices only (unregistered, or its session is ending).
  if (auto slot = regions_.find(id); slot != regions_.end()) {
    if (auto session = sessions_.find(slot->second.owner); session != sessions_.end()) {
      g.session = session->second.token;
    }
  }
  g.fd_name = RegionFdName(id);
  g.offset = backing->fd_offset();
  g.size = backing->size();
  g.charged = IsChargedRegion(*backing);
  return g;
}

void Service::StoreObjectRecord(const std::string& object, const lifecycle::StateRecord& own) {
  const std::string name = lifecycle::ObjectRecordName(object);
  auto sealed = lifecycle::SealRecord(own);
  if (!sealed) {
    spdlog::warn("fd store: own record of {}: {} (it is lost if vfiod dies before the next record)",
                 object, sealed.error().message());
    return;
  }
  fd_store_.store(name, sealed->get());
  // Noted after the store: a RecordStored running meanwhile cannot remove
  // it before it is there (it waits for the next record instead).
  std::lock_guard lock(object_records_mu_);
  object_records_.insert(name);
}

void Service::StoreContainerFd(ManagedContainer& managed) {
  if (!fd_store_.store) {
    return;
  }
  std::lock_guard clock(managed.mu());
  const int fd = managed.container_fd();
  if (fd < 0) {
    return;  // destroyed already: nothing to keep
  }
  const std::string name = ContainerFdName(managed.id());
  // Closing a group fd detaches it, and the last one takes the IOMMU
  // domain with every mapping: the groups must outlive vfiod too.
  for (auto [group, group_fd] : managed.group_fds()) {
    fd_store_.store(lifecycle::GroupFdName(managed.id(), group), group_fd);
  }
  KeepDevicesLocked(managed);
  fd_store_.store(name, fd);
  std::optional<lifecycle::StateRecord> own;
  {
    std::lock_guard lock(mu_);
    auto slot = containers_.find(managed.id());
    if (slot != containers_.end() && slot->second.managed) {
      if (auto c = ContainerRecordLocked(slot->second)) {
        own.emplace();
        own->next_id = next_id_;
        own->mapping_generation = std::max<uint32_t>(mapping_generation_floor_, 1);
        own->containers.push_back(std::move(*c));
      }
    }
  }
  if (own) {
    StoreObjectRecord(name, *own);  // last: with it, the container is complete
  }
}

void Service::KeepDevicesLocked(ManagedContainer& managed) {
  if (!fd_store_.store) {
    return;
  }
  // A device fd closed by a SIGKILLed vfiod would be the last one of a
  // device nobody else holds: the kernel resets it, and the successor would
  // have to open it again (another reset) to hear its release requests.
  managed.SetDeviceKeeper([this, id = managed.id()](const std::string& bdf, int fd) {
    fd_store_.store(lifecycle::DeviceFdName(id, bdf), fd);
  });
}

void Service::RemoveContainerFds(ContainerId id, const std::vector<int>& groups,
                                 const std::vector<std::string>& devices) {
  if (!fd_store_.remove) {
    return;
  }
  const std::string name = ContainerFdName(id);
  fd_store_.remove(lifecycle::ObjectRecordName(name));  // first: it names the fds below
  fd_store_.remove(name);
  for (int group : groups) {
    fd_store_.remove(lifecycle::GroupFdName(id, group));
  }
  for (const std::string& bdf : devices) {
    fd_store_.remove(lifecycle::DeviceFdName(id, bdf));
  }
  fd_budget_.Release(name);  // its fds are out of the store
  std::lock_guard lock(object_records_mu_);
  object_records_.erase(lifecycle::ObjectRecordName(name));
}

void Service::StoreMappingFd(ManagedContainer& managed, MappingId id, uint64_t engine_id) {
  if (!fd_store_.store) {
    return;
  }
  auto kept = managed.Keepable(engine_id);
  if (!kept) {
    return;
  }
  const std::string name = MappingFdName(id);
  std::optional<lifecycle::StateRecord> own;
  bool slice = false;
  {
    std::lock_guard lock(mu_);
    auto container = containers_.find(managed.id());
    const MappingSlot* slot = FindMappingLocked(id);
    if (container != containers_.end() && container->second.managed && slot != nullptr) {
      slice = slot->region != 0;
      auto c = ContainerRecordLocked(container->second);
      auto m = MappingRecordLocked(id, *slot, managed);
      auto g = slice ? RegionRecordLocked(slot->region) : std::nullopt;
      // Else nothing a restart could take over.
      if (c && m && !m->entries.empty() && (!slice || g)) {
        own.emplace();
        own->next_id = next_id_;
        own->mapping_generation = static_cast<uint32_t>(id >> 32) + 1;
        own->containers.push_back(std::move(*c));
        if (g) {
          own->regions.push_back(std::move(*g));
        }
        own->mappings.push_back(std::move(*m));
      }
    }
  }
  // A BAR has no fd: its device is reopened; a slice's memory is its region's.
  if (kept->fd >= 0 && !slice) {
    fd_store_.store(name, kept->fd);
  }
  if (own) {
    StoreObjectRecord(name, *own);  // last: with it, the mapping is complete
  }
}

void Service::RemoveMappingFd(MappingId id) {
  if (!fd_store_.remove) {
    return;
  }
  const std::string name = MappingFdName(id);
  fd_store_.remove(lifecycle::ObjectRecordName(name));
  fd_store_.remove(name);
  fd_budget_.Release(name);  // none for a mapping a restart let go
  std::lock_guard lock(object_records_mu_);
  object_records_.erase(lifecycle::ObjectRecordName(name));
}

void Service::RecordStored(const lifecycle::StateRecord& record) {
  std::set<std::string> described;
  for (const lifecycle::ContainerRecord& c : record.containers) {
    described.insert(c.fd_name);
  }
  for (const lifecycle::MappingRecord& m : record.mappings) {
    described.insert(MappingFdName(m.id));
  }
  std::vector<std::string> settled;
  {
    std::lock_guard lock(object_records_mu_);
    for (auto it = object_records_.begin(); it != object_records_.end();) {
      if (described.contains(std::string(lifecycle::ObjectOfRecordName(*it)))) {
        settled.push_back(*it);
        it = object_records_.erase(it);
      } else {
        ++it;
      }
    }
  }
  // A region whose memory nobody holds any more, and that this record no
  // longer describes, leaves the store (it cannot come back to life).
  std::set<RegionId> recorded_regions;
  for (const lifecycle::RegionRecord& g : record.regions) {
    recorded_regions.insert(g.id);
  }
  {
    std::lock_guard lock(mu_);
    for (auto it = stored_regions_.begin(); it != stored_regions_.end();) {
      if (it->second.backing.expired() && !recorded_regions.contains(it->first)) {
        settled.push_back(RegionFdName(it->first));
        it = stored_regions_.erase(it);
      } else {
        ++it;
      }
    }
  }
  for (const std::string& name : settled) {
    fd_store_.remove(name);
    fd_budget_.Release(name);  // a region's (an own record has no charge of its own)
  }
}

void Service::KeepObjectRecords(const std::vector<std::string>& names) {
  std::lock_guard lock(object_records_mu_);
  object_records_.insert(names.begin(), names.end());
}

}  // namespace vfiod::service
