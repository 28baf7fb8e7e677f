// Sessions, containers and the daemon-wide views. DMA operations are in
// service_dma.cc, device operations in service_devices.cc.
#include "service/service.h"

#include <malloc.h>
#include <spdlog/spdlog.h>

#include <algorithm>

#include "dma/engine.h"
#include "service/managed_container.h"

namespace vfiod::service {

namespace {
constexpr char kVersion[] = "0.1.0";
constexpr int kApiVersion = 1;
}  // namespace

Service::Service(Config config, std::unique_ptr<kernel::Kernel> kernel, vfio::PciSysfs sysfs)
    : config_(std::move(config)),
      kernel_(std::move(kernel)),
      sysfs_(std::move(sysfs)),
      policy_(config_.policy),
      started_(std::chrono::steady_clock::now()),
      max_locked_bytes_(ResolveMaxLockedBytes(config_.limits)) {
  if (max_locked_bytes_ == kUnlimited) {
    spdlog::warn("no daemon-wide cap on locked memory (limits.max_locked_bytes)");
  } else {
    spdlog::info("locked memory capped at {} bytes for all clients (limits.max_locked_bytes)",
                 max_locked_bytes_);
  }
  if (auto ext = ProbeExtensions(*kernel_); ext) {
    extensions_ = *ext;
  } else {
    spdlog::warn("cannot probe VFIO extensions: {}", ext.error().message());
  }
}

Service::~Service() { Shutdown(); }

SessionId Service::OpenSession(const Identity& identity) {
  std::lock_guard lock(mu_);
  SessionId id = next_id_++;
  sessions_.emplace(id, Session{identity});
  spdlog::debug("session {} opened (uid {})", id, identity.uid);
  return id;
}

void Service::CloseSession(SessionId session) {
  std::vector<ContainerSlot> owned;
  struct Loose {
    MappingId id;
    uint64_t engine_id;
    std::shared_ptr<ManagedContainer> managed;
  };
  std::vector<Loose> loose;
  // The session's regions leave the table under mu_ but are released after
  // it: the last reference unmaps the daemon's view, which must not hold mu_.
  std::vector<std::shared_ptr<const dma::Backing>> regions;
  {
    std::lock_guard lock(mu_);
    if (sessions_.erase(session) == 0) {
      return;
    }
    for (auto it = regions_.begin(); it != regions_.end();) {
      if (it->second.owner == session) {
        regions.push_back(std::move(it->second.backing));
        it = regions_.erase(it);
      } else {
        ++it;
      }
    }
    for (auto it = containers_.begin(); it != containers_.end();) {
      it->second.attached.erase(session);
      if (it->second.owner == session && it->second.name.empty() && it->second.managed) {
        owned.push_back(std::move(it->second));
        it = containers_.erase(it);
      } else {
        if (it->second.owner == session) {
          it->second.owner = 0;  // named: outlives its creator
        }
        ++it;
      }
    }
    ForEachMappingLocked([&](MappingId id, const MappingSlot& slot) {
      if (slot.owner != session) {
        return;
      }
      auto c = containers_.find(slot.container);
      if (c != containers_.end() && c->second.managed) {
        loose.push_back(Loose{id, slot.engine_id, c->second.managed});
      }
    });
  }
  // Mappings the session made in containers that survive it (named ones).
  for (const Loose& m : loose) {
    std::lock_guard clock(m.managed->mu());
    auto unmapped = m.managed->Unmap(m.engine_id);
    std::lock_guard lock(mu_);
    if (FindMappingLocked(m.id) != nullptr) {
      if (unmapped) {
        stats_.RecordUnmap(unmapped->bytes, unmapped->ioctls);
      }
      RemoveMappingLocked(m.id);
    }
  }
  uint64_t bytes = 0;
  for (auto& slot : owned) {
    bytes += Teardown(slot);
  }
  spdlog::info("session {} closed: {} containers released, {} mappings unmapped ({} bytes)",
               session, owned.size(), loose.size(), bytes);
  if (!owned.empty() || !loose.empty() || !regions.empty()) {
    owned.clear();  // the last references to the torn-down containers
    loose.clear();
    regions.clear();
    // glibc keeps freed heap for reuse; a session that held many mappings
    // leaves megabytes of it. Once per session, off every lock.
    ::malloc_trim(0);
  }
}

void Service::Shutdown() {
  std::vector<ContainerSlot> all;
  {
    std::lock_guard lock(mu_);
    for (auto& [id, slot] : containers_) {
      if (slot.managed) {
        all.push_back(std::move(slot));
      }
    }
    containers_.clear();
    sessions_.clear();
    regions_.clear();
  }
  for (auto& slot : all) {
    Teardown(slot);
  }
}

uint64_t Service::Teardown(const ContainerSlot& slot) {
  dma::UnmapReport unmapped;
  {
    std::lock_guard clock(slot.managed->mu());  // waits for a map in progress
    unmapped = slot.managed->Close();
  }
  std::lock_guard lock(mu_);
  std::vector<MappingId> gone;
  ForEachMappingLocked([&](MappingId id, const MappingSlot& m) {
    if (m.container == slot.id) {
      gone.push_back(id);
    }
  });
  for (MappingId id : gone) {
    RemoveMappingLocked(id);
  }
  const uint64_t count = gone.size();
  for (int group : slot.managed->groups()) {
    groups_held_.erase(group);
  }
  UnreserveLocked(slot.owner_uid, 0, 0, 1);
  if (count > 0) {
    stats_.RecordUnmap(unmapped.bytes, unmapped.ioctls);
  }
  spdlog::debug("container {} closed ({} mappings, {} bytes unmapped)", slot.id, count,
                unmapped.bytes);
  return unmapped.bytes;
}

StatusView Service::Status() const {
  StatusView s;
  s.version = kVersion;
  s.kernel = kernel_->name();
  s.api_version = kApiVersion;
  s.extensions = extensions_;
  s.uptime_s = static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() - started_)
          .count());
  std::lock_guard lock(mu_);
  s.clients = sessions_.size();
  s.containers = static_cast<uint64_t>(std::count_if(
      containers_.begin(), containers_.end(), [](const auto& c) { return c.second.managed; }));
  s.mappings = live_mappings_;
  s.region_locked_bytes = held_->Total();
  s.locked_bytes = pinned_bytes_ + s.region_locked_bytes;
  s.max_locked_bytes = max_locked_bytes_;
  for (const auto& [id, c] : containers_) {
    if (c.managed) {
      s.dma_entries += c.managed->totals().entries;  // a leaf lock
    }
  }
  return s;
}

SResult<void> Service::CheckMethodAllowed(const Caller& caller, const std::string& method) const {
  if (!caller.is_root() && policy_.IsRootOnly(method)) {
    return Refuse(ErrorKind::kPermission, EPERM, method,
                  "the configuration makes this method root-only (policy.root_only)");
  }
  return {};
}

// --- registry helpers (mu_ held) ------------------------------------------------

bool Service::CanAccessLocked(const Caller& caller, const ContainerSlot& slot) const {
  if (!slot.managed) {
    return false;  // still being created
  }
  if (caller.is_root() || slot.owner == caller.session || slot.attached.contains(caller.session)) {
    return true;
  }
  return !slot.name.empty() && slot.owner_uid == caller.identity.uid;
}

SResult<std::shared_ptr<ManagedContainer>> Service::FindContainerLocked(const Caller& caller,
                                                                        ContainerId id) const {
  auto it = containers_.find(id);
  if (it == containers_.end() || !CanAccessLocked(caller, it->second)) {
    return Refuse(ErrorKind::kNotFound, ENOENT, "container",
                  "no container " + std::to_string(id) + " visible to this client");
  }
  return it->second.managed;
}

namespace {
bool Over(uint64_t used, uint64_t more, uint64_t limit) {
  return limit != kUnlimited && (more > limit || used > limit - more);
}
}  // namespace

uint64_t Service::TotalLockedLocked() const {
  uint64_t total = held_->Total();
  for (const auto& [uid, use] : usage_) {
    total += use.locked_bytes;
  }
  return total;
}

SResult<void> Service::CheckLockedLocked(const Caller& caller, uint64_t bytes) const {
  if (bytes == 0) {
    return {};
  }
  const Quota quota = policy_.QuotaFor(caller.identity);
  auto use = usage_.find(caller.identity.uid);
  const uint64_t mine =
      (use == usage_.end() ? 0 : use->second.locked_bytes) + held_->Of(caller.identity.uid);
  if (Over(mine, bytes, quota.locked_bytes)) {
    return Refuse(ErrorKind::kQuota, EDQUOT, "quota",
                  "locked_bytes: " + std::to_string(mine) + " in use + " + std::to_string(bytes) +
                      " asked > " + std::to_string(quota.locked_bytes));
  }
  if (const uint64_t all = TotalLockedLocked(); Over(all, bytes, max_locked_bytes_)) {
    return Refuse(ErrorKind::kQuota, EDQUOT, "quota",
                  "limits.max_locked_bytes: " + std::to_string(all) + " locked for all clients + " +
                      std::to_string(bytes) + " asked > " + std::to_string(max_locked_bytes_) +
                      " (the daemon-wide cap)");
  }
  return {};
}

SResult<void> Service::ReserveLocked(const Caller& caller, uint64_t bytes, uint64_t mappings,
                                     uint64_t containers) {
  VFIOD_TRY(CheckLockedLocked(caller, bytes));
  const Quota quota = policy_.QuotaFor(caller.identity);
  Usage& use = usage_[caller.identity.uid];
  if (Over(use.mappings, mappings, quota.mappings)) {
    return Refuse(ErrorKind::kQuota, EDQUOT, "quota",
                  "mappings: " + std::to_string(use.mappings) + " in use, limit " +
                      std::to_string(quota.mappings));
  }
  if (Over(use.containers, containers, quota.containers)) {
    return Refuse(ErrorKind::kQuota, EDQUOT, "quota",
                  "containers: " + std::to_string(use.containers) + " in use, limit " +
                      std::to_string(quota.containers));
  }
  use.locked_bytes += bytes;
  use.mappings += mappings;
  use.containers += containers;
  return {};
}

void Service::UnreserveLocked(uid_t uid, uint64_t bytes, uint64_t mappings, uint64_t containers) {
  Usage& use = usage_[uid];
  use.locked_bytes -= std::min(use.locked_bytes, bytes);
  use.mappings -= std::min(use.mappings, mappings);
  use.containers -= std::min(use.containers, containers);
}

ContainerView Service::ViewLocked(const ContainerSlot& slot) const {
  ContainerView v;
  v.id = slot.id;
  v.name = slot.name;
  v.owner_uid = slot.owner_uid;
  v.groups = slot.managed->groups();
  v.iommu = slot.managed->iommu_info();
  v.extensions = slot.managed->extensions();
  const ManagedContainer::Totals totals = slot.managed->totals();
  v.mappings = totals.mappings;
  v.mapped_bytes = totals.bytes;
  v.dma_entries_used = totals.entries;
  return v;
}

// --- containers ------------------------------------------------------------------

SResult<ContainerView> Service::CreateContainer(const Caller& caller,
                                                const std::vector<std::string>& bdfs,
                                                const std::string& name) {
  if (bdfs.empty()) {
    return Refuse(ErrorKind::kInvalidParams, EINVAL, "container.create",
                  "devices: at least one device is needed");
  }
  std::vector<int> groups;
  for (const auto& bdf : bdfs) {
    vfio::PciDevice dev = VFIOD_TRY(FindDevice(caller, bdf));
    if (!dev.iommu_group) {
      return Refuse(ErrorKind::kInvalidParams, ENODEV, "container.create",
                    dev.bdf + " has no IOMMU group (is the IOMMU enabled?)");
    }
    if (std::find(groups.begin(), groups.end(), *dev.iommu_group) == groups.end()) {
      groups.push_back(*dev.iommu_group);
    }
  }
  ContainerId id = 0;
  {
    std::lock_guard lock(mu_);
    if (!name.empty()) {
      for (const auto& [cid, slot] : containers_) {
        if (slot.name == name) {
          return Refuse(ErrorKind::kBusy, EEXIST, "container.create",
                        "a container named '" + name + "' exists");
        }
      }
    }
    VFIOD_TRY(ReserveLocked(caller, 0, 0, 1));
    for (int g : groups) {
      if (auto it = groups_held_.find(g); it != groups_held_.end()) {
        UnreserveLocked(caller.identity.uid, 0, 0, 1);
        return Refuse(ErrorKind::kBusy, EBUSY, "container.create",
                      "IOMMU group " + std::to_string(g) + " is in use by another container");
      }
    }
    id = next_id_++;
    for (int g : groups) {
      groups_held_[g] = id;
    }
    // A placeholder keeps the name taken while the container is being built.
    containers_[id] =
        ContainerSlot{id, name, caller.session, caller.identity.uid, {}, nullptr, bdfs};
  }
  auto managed = ManagedContainer::Create(*kernel_, sysfs_, id, groups, config_.limits);
  ContainerSlot orphan;
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
    if (sessions_.contains(caller.session) || !name.empty()) {
      spdlog::info("container {} created by uid {} ({} groups){}", id, caller.identity.uid,
                   groups.size(), name.empty() ? "" : ", named " + name);
      return ViewLocked(slot);
    }
    // The client went away while the container was built: nobody can use it.
    orphan = std::move(slot);
    containers_.erase(id);
  }
  Teardown(orphan);
  return Refuse(ErrorKind::kNotFound, ECONNRESET, "container.create", "the session closed");
}

SResult<ContainerView> Service::AttachContainer(const Caller& caller, const std::string& name) {
  std::vector<std::string> devices;
  {
    std::lock_guard lock(mu_);
    auto it = std::find_if(containers_.begin(), containers_.end(), [&](const auto& c) {
      return c.second.managed && !c.second.name.empty() && c.second.name == name;
    });
    if (it == containers_.end()) {
      return Refuse(ErrorKind::kNotFound, ENOENT, "container.attach",
                    "no named container '" + name + "'");
    }
    devices = it->second.devices;
  }
  for (const auto& bdf : devices) {
    VFIOD_TRY(FindDevice(caller, bdf));  // policy: every device of the container
  }
  std::lock_guard lock(mu_);
  for (auto& [id, slot] : containers_) {
    if (slot.managed && slot.name == name) {
      slot.attached.insert(caller.session);
      return ViewLocked(slot);
    }
  }
  return Refuse(ErrorKind::kNotFound, ENOENT, "container.attach", "destroyed meanwhile");
}

std::vector<ContainerView> Service::ListContainers(const Caller& caller) const {
  std::lock_guard lock(mu_);
  std::vector<ContainerView> out;
  for (const auto& [id, slot] : containers_) {
    if (CanAccessLocked(caller, slot)) {
      out.push_back(ViewLocked(slot));
    }
  }
  return out;
}

SResult<std::pair<ContainerView, std::vector<MappingView>>> Service::ContainerInfo(
    const Caller& caller, ContainerId container) {
  std::shared_ptr<ManagedContainer> managed;
  std::vector<std::pair<MappingView, uint64_t>> found;
  {
    std::lock_guard lock(mu_);
    managed = VFIOD_TRY(FindContainerLocked(caller, container));
    found = VisibleMappingsLocked(caller, container);
  }
  std::vector<MappingView> maps;
  maps.reserve(found.size());
  {
    std::lock_guard clock(managed->mu());
    for (auto& [view, engine_id] : found) {
      auto record = managed->closed() ? Result<dma::MappingReport>(Fail(ENOENT, "", ""))
                                      : managed->Describe(engine_id);
      if (record) {  // else freed meanwhile
        AddDetail(view, *record);
        maps.push_back(std::move(view));
      }
    }
  }
  std::lock_guard lock(mu_);
  auto it = containers_.find(container);
  if (it == containers_.end() || !it->second.managed) {
    return Refuse(ErrorKind::kNotFound, ENOENT, "container", "destroyed meanwhile");
  }
  return std::make_pair(ViewLocked(it->second), std::move(maps));
}

SResult<uint64_t> Service::DestroyContainer(const Caller& caller, ContainerId container) {
  ContainerSlot slot;
  {
    std::lock_guard lock(mu_);
    auto it = containers_.find(container);
    if (it == containers_.end() || !CanAccessLocked(caller, it->second)) {
      return Refuse(ErrorKind::kNotFound, ENOENT, "container.destroy",
                    "no container " + std::to_string(container) + " visible to this client");
    }
    if (!caller.is_root() && it->second.owner_uid != caller.identity.uid) {
      return Refuse(ErrorKind::kPermission, EPERM, "container.destroy",
                    "only its owner (uid " + std::to_string(it->second.owner_uid) +
                        ") or root may destroy it");
    }
    slot = std::move(it->second);
    containers_.erase(it);
  }
  return Teardown(slot);
}

}  // namespace vfiod::service
