// Live restart (issue 14): what a new vfiod takes over from the state record
// and the fds its predecessor left in the service manager's fd store, the
// sessions kept for clients that died with it, and the graceful hand-over.
#include <spdlog/fmt/fmt.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <set>

#include "dma/backing.h"
#include "journal/sink.h"
#include "lifecycle/stored_fds.h"
#include "proto/backing.h"
#include "service/managed_container.h"
#include "service/service.h"

namespace vfiod::service {

namespace {

/// Mapping slots a record may name (an id's low half): more than the
/// mappings all containers can hold; a larger one is a damaged record.
constexpr uint64_t kMaxAdoptedSlot = uint64_t{1} << 22;

/// Takes the fd stored under `name` out of `fds` (an invalid fd: none).
UniqueFd Take(std::map<std::string, UniqueFd>& fds, const std::string& name) {
  UniqueFd fd;
  if (auto it = fds.find(name); it != fds.end()) {
    fd = std::move(it->second);
    fds.erase(it);
  }
  return fd;
}

/// Mapping `m`'s request to DmaSpace::Adopt: its stored backing mapped again
/// (null when missing or unusable: the engine then releases the mapping).
/// A slice of a region shares the region's backing (`regions`): its entry
/// offsets, offsets in the region's file, become offsets in the backing.
dma::AdoptRequest RequestOf(const lifecycle::MappingRecord& m, uint64_t key,
                            const std::map<RegionId, std::shared_ptr<const dma::Backing>>& regions,
                            std::map<std::string, UniqueFd>& fds) {
  dma::AdoptRequest request;
  request.key = key;
  for (const lifecycle::EntryRecord& e : m.entries) {
    request.entries.push_back({e.iova, e.size, e.offset});
  }
  if (m.region != 0) {
    auto region = regions.find(m.region);
    if (region == regions.end()) {
      return request;  // its region did not come back: released
    }
    for (dma::AdoptEntry& e : request.entries) {
      if (e.offset < region->second->fd_offset()) {
        return request;  // not inside the region: released
      }
      e.offset -= region->second->fd_offset();
    }
    request.backing = region->second;
    return request;
  }
  if (m.fd_name.empty() || (m.id & 0xffffffff) > kMaxAdoptedSlot) {
    return request;  // a BAR, memory that could not be stored, or a bad id
  }
  UniqueFd fd = Take(fds, m.fd_name);
  auto kind = wire::ParseBacking(m.backing);
  if (!fd || !kind) {
    return request;
  }
  if (auto backing = dma::ReopenBacking(std::move(fd), *kind)) {
    request.backing = std::make_shared<const dma::Backing>(std::move(*backing));
  } else {
    spdlog::warn("restart: mapping {}: {}", m.id, backing.error().message());
  }
  return request;
}

}  // namespace

std::string Service::SessionToken(SessionId session) const {
  std::lock_guard lock(mu_);
  auto it = sessions_.find(session);
  return it == sessions_.end() ? std::string() : it->second.token;
}

SResult<Service::Resumed> Service::ResumeSession(const Caller& caller, const std::string& token) {
  Resumed resumed;
  SessionId old = 0;
  {
    std::lock_guard lock(mu_);
    auto missing = Refuse(ErrorKind::kNotFound, ENOENT, "session.resume",
                          "no session of yours to resume has this token");
    auto detached = detached_.find(token);
    if (detached == detached_.end()) {
      return missing;
    }
    old = detached->second;
    if (sessions_.at(old).identity.uid != caller.identity.uid) {
      return missing;
    }
    if (!sessions_.contains(caller.session)) {
      return Refuse(ErrorKind::kNotFound, ECONNRESET, "session.resume", "the session closed");
    }
    for (auto& [id, slot] : containers_) {
      if (slot.owner == old) {
        slot.owner = caller.session;
        ++resumed.containers;
      }
    }
    for (MappingSlot& slot : mapping_slots_) {
      if (slot.container != 0 && slot.owner == old) {
        slot.owner = caller.session;
        ++resumed.mappings;
      }
    }
    for (auto& [id, slot] : regions_) {
      if (slot.owner == old) {
        slot.owner = caller.session;
        ++resumed.regions;
      }
    }
    sessions_.at(caller.session).regions += static_cast<uint32_t>(resumed.regions);
    detached_.erase(detached);
    sessions_.erase(old);
  }
  // The objects are recorded under the caller's token now; the reply waits
  // for that record (no own record carries it), or a crash would leave them
  // under a token the client no longer holds.
  ChangeNote note{*this, true};
  journal::Emit({.kind = journal::Kind::kSessionResumed,
                 .message = fmt::format("session {} (uid {}) resumed session {}: {} containers, {} "
                                        "mappings",
                                        caller.session, caller.identity.uid, old,
                                        resumed.containers, resumed.mappings),
                 .uid = caller.identity.uid,
                 .session = caller.session});
  return resumed;
}

std::optional<std::chrono::steady_clock::time_point> Service::ReleaseExpiredSessions() {
  std::vector<SessionId> due;
  std::optional<std::chrono::steady_clock::time_point> next;
  {
    std::lock_guard lock(mu_);
    const auto now = std::chrono::steady_clock::now();
    for (const auto& [token, id] : detached_) {
      const auto expires = sessions_.at(id).expires;
      if (expires <= now) {
        due.push_back(id);
      } else if (!next || expires < *next) {
        next = expires;
      }
    }
  }
  for (SessionId id : due) {
    spdlog::info("session {}, kept by the restart, was not resumed in time: released", id);
    CloseSession(id);
  }
  return next;
}

SessionId Service::DetachedSessionLocked(const std::string& token, uid_t uid,
                                         std::chrono::steady_clock::time_point expires) {
  if (auto it = detached_.find(token); it != detached_.end()) {
    if (sessions_.at(it->second).identity.uid == uid) {
      return it->second;
    }
    // One token with two owners: a damaged record. Keep them apart; the
    // second one cannot be resumed (its token is taken).
    spdlog::warn("restart: session token of uid {} is also uid {}'s", uid,
                 sessions_.at(it->second).identity.uid);
    const SessionId id = next_id_++;
    sessions_.emplace(id, Session{Identity{uid, uid, {}}, 0, std::string(), true, expires});
    return id;
  }
  const SessionId id = next_id_++;
  sessions_.emplace(id, Session{Identity{uid, uid, {}}, 0, token, true, expires});
  detached_[token] = id;
  return id;
}

void Service::ReadoptContainer(
    const lifecycle::ContainerRecord& c, const std::vector<const lifecycle::MappingRecord*>& mine,
    const std::map<RegionId, std::shared_ptr<const dma::Backing>>& regions,
    std::map<std::string, UniqueFd>& fds, ReadoptReport& report) {
  ManagedContainer::Inherited inherited;
  inherited.container = Take(fds, c.fd_name);
  for (int group : c.groups) {
    if (UniqueFd fd = Take(fds, lifecycle::GroupFdName(c.id, group))) {
      inherited.groups.emplace_back(group, std::move(fd));
    } else {
      spdlog::warn("restart: container {}: group {} did not come back (detached)", c.id, group);
    }
  }
  std::vector<std::string> device_names;  // every device the record names
  for (const lifecycle::DeviceRecord& d : c.devices) {
    device_names.push_back(d.bdf);
    if (UniqueFd fd = Take(fds, d.fd_name)) {
      inherited.devices.push_back({d.bdf, d.group, std::move(fd)});
    } else {
      spdlog::warn(
          "restart: container {}: device {} did not come back (its release requests "
          "go unheard unless it is opened again)",
          c.id, d.bdf);
    }
  }
  for (size_t key = 0; key < mine.size(); ++key) {
    inherited.mappings.push_back(RequestOf(*mine[key], key, regions, fds));
    if (mine[key]->mmio && !mine[key]->bar_bdf.empty()) {
      inherited.bars[key] = {mine[key]->bar_bdf, mine[key]->bar_index};
    }
  }
  std::vector<int> groups;
  for (const auto& [group, fd] : inherited.groups) {
    groups.push_back(group);
  }
  Result<std::pair<std::shared_ptr<ManagedContainer>, dma::AdoptReport>> adopted =
      Fail(EBADF, "adopt container", "its fd did not come back");
  if (inherited.container) {
    adopted = ManagedContainer::Adopt(*kernel_, c.id, std::move(inherited), config_.limits);
  }
  if (!adopted) {
    journal::Emit(
        {.kind = journal::Kind::kRestartReleased,
         .message = fmt::format("restart: container {} (uid {}) and its {} mappings "
                                "released: {}",
                                c.id, c.owner_uid, mine.size(), adopted.error().message()),
         .level = journal::Level::kError,
         .uid = c.owner_uid,
         .container = c.id,
         .error_number = adopted.error().code});
    ++report.released_containers;
    report.released_mappings += mine.size();
    RemoveContainerFds(c.id, c.groups, device_names);
    for (const lifecycle::MappingRecord* m : mine) {
      RemoveMappingFd(m->id);
    }
    return;
  }
  auto& [managed, adopt] = *adopted;
  report.stray_bytes += adopt.stray_bytes;
  for (const Error& failure : adopt.unmap_failures) {
    journal::Emit({.kind = journal::Kind::kKernelError,
                   .message = fmt::format("restart: container {}: {}", c.id, failure.message()),
                   .level = journal::Level::kError,
                   .uid = c.owner_uid,
                   .container = c.id,
                   .error_number = failure.code});
  }
  std::vector<DeviceId> devices;  // policy for users it is shared with: every member
  uint64_t members = 0;
  for (int group : groups) {
    for (const vfio::GroupMember& member : sysfs_.GroupMembers(group)) {
      ++members;
      if (auto dev = sysfs_.Get(member.name)) {
        devices.push_back(DeviceId{dev->bdf, dev->vendor, dev->device});
      }
    }
  }
  ShareList shared;
  shared.users.insert(c.shared_users.begin(), c.shared_users.end());
  shared.groups.insert(c.shared_groups.begin(), c.shared_groups.end());
  const auto expires = std::chrono::steady_clock::now() + grace_;
  std::vector<MappingId> released;
  // Its fds are in the store already: charged without a check.
  fd_budget_.Adopt(lifecycle::ContainerFdName(c.id), c.owner_uid,
                   ContainerStoredFds(groups.size(), members));
  {
    std::lock_guard lock(mu_);
    const SessionId owner =
        c.name.empty() ? DetachedSessionLocked(c.session, c.owner_uid, expires) : 0;
    containers_[c.id] = ContainerSlot{c.id, c.name, owner, c.owner_uid, shared, managed, devices};
    for (int group : groups) {
      groups_held_[group] = c.id;
    }
    ++usage_[c.owner_uid].containers;
    ++report.containers;
    for (const dma::AdoptOutcome& outcome : adopt.mappings) {
      const lifecycle::MappingRecord& m = *mine[outcome.key];
      if (outcome.id == 0) {
        journal::Emit(
            {.kind = journal::Kind::kRestartReleased,
             .message = fmt::format("restart: mapping {} (uid {}, iova {:#x}) released: {}", m.id,
                                    m.owner_uid, m.iova,
                                    outcome.error ? outcome.error->message() : "not taken over"),
             .uid = m.owner_uid,
             .container = c.id,
             .mapping = m.id,
             .error_number = outcome.error ? std::optional<int>(outcome.error->code) : std::nullopt,
             .iova = m.iova});
        released.push_back(m.id);
        continue;
      }
      // A BAR pins nothing; a slice of a charged (hugetlb) region is covered
      // by the region's charge.
      auto region = regions.find(m.region);
      const bool covered = region != regions.end() && IsChargedRegion(*region->second);
      const uint64_t charged = m.mmio || covered ? 0 : m.size;
      usage_[m.owner_uid].locked_bytes += charged;
      ++usage_[m.owner_uid].mappings;
      const SessionId by =
          m.name.empty() ? DetachedSessionLocked(m.session, m.owner_uid, expires) : 0;
      AddMappingAtLocked(m.id, MappingSlot{c.id, by, outcome.id, charged, 0, m.owner_uid, m.region},
                         m.name);
      fd_budget_.Adopt(lifecycle::MappingFdName(m.id), m.owner_uid, kStoredFdsPerMapping);
      ++report.mappings;
    }
  }
  report.released_mappings += released.size();
  for (MappingId id : released) {
    RemoveMappingFd(id);
  }
  {
    std::lock_guard clock(managed->mu());
    KeepDevicesLocked(*managed);
  }
  WatchRequests(*managed);  // the devices taken over, and those it opens from now on
}

std::map<RegionId, std::shared_ptr<const dma::Backing>> Service::ReadoptRegions(
    const lifecycle::StateRecord& record, std::map<std::string, UniqueFd>& fds,
    ReadoptReport& report) {
  std::map<RegionId, std::shared_ptr<const dma::Backing>> out;
  const auto expires = std::chrono::steady_clock::now() + grace_;
  for (const lifecycle::RegionRecord& g : record.regions) {
    UniqueFd fd = Take(fds, g.fd_name);
    auto adopted = fd ? dma::AdoptClientFd(std::move(fd), g.offset, g.size)
                      : Result<dma::Backing>(Fail(EBADF, "region", "its fd did not come back"));
    if (!adopted) {
      journal::Emit({.kind = journal::Kind::kRestartReleased,
                     .message = fmt::format("restart: region {} (uid {}) released: {}", g.id,
                                            g.owner_uid, adopted.error().message()),
                     .uid = g.owner_uid,
                     .error_number = adopted.error().code});
      ++report.released_regions;
      if (fd_store_.remove) {
        fd_store_.remove(g.fd_name);
      }
      continue;
    }
    // Charged as before, without a quota check: the memory is held already.
    std::shared_ptr<const dma::Backing> backing =
        g.charged ? HoldRegion(g.owner_uid, std::move(*adopted))
                  : std::make_shared<const dma::Backing>(std::move(*adopted));
    fd_budget_.Adopt(g.fd_name, g.owner_uid, 1);
    std::lock_guard lock(mu_);
    stored_regions_[g.id] = StoredRegion{g.owner_uid, backing};
    if (!g.session.empty()) {
      const SessionId owner = DetachedSessionLocked(g.session, g.owner_uid, expires);
      regions_.emplace(g.id, RegionSlot{owner, g.owner_uid, backing});
      ++sessions_.at(owner).regions;
    }
    out.emplace(g.id, std::move(backing));
    ++report.regions;
  }
  return out;
}

Service::ReadoptReport Service::Readopt(const lifecycle::StateRecord& record,
                                        std::map<std::string, UniqueFd>& fds,
                                        std::chrono::seconds grace) {
  ChangeNote note{*this};
  ReadoptReport report;
  {
    std::lock_guard lock(mu_);
    next_id_ = std::max(next_id_, record.next_id);
    mapping_generation_floor_ = std::max(mapping_generation_floor_, record.mapping_generation);
    grace_ = grace;
  }
  // The regions first: mappings that are their slices share their memory.
  const std::map<RegionId, std::shared_ptr<const dma::Backing>> regions =
      ReadoptRegions(record, fds, report);
  // Each container's mappings, found once (not a scan of all per container).
  std::map<uint64_t, std::vector<const lifecycle::MappingRecord*>> by_container;
  for (const lifecycle::MappingRecord& m : record.mappings) {
    by_container[m.container].push_back(&m);
  }
  for (const lifecycle::ContainerRecord& c : record.containers) {
    ReadoptContainer(c, by_container[c.id], regions, fds, report);
  }
  std::lock_guard lock(mu_);
  RebuildFreeMappingSlotsLocked();
  report.detached_sessions = detached_.size();
  for (const lifecycle::OwnerRecord& o : record.owners) {
    const Usage& now = usage_[o.uid];
    if (now.locked_bytes != o.locked_bytes || now.mappings != o.mappings ||
        now.containers != o.containers) {
      // Released objects, and hugetlb regions (they die with their sessions).
      spdlog::info(
          "restart: uid {} is charged {} locked bytes, {} mappings, {} containers (recorded: {}, "
          "{}, {})",
          o.uid, now.locked_bytes, now.mappings, now.containers, o.locked_bytes, o.mappings,
          o.containers);
    }
  }
  journal::Emit({.kind = journal::Kind::kRestartTookOver,
                 .message = fmt::format(
                     "restart: took over {} containers, {} mappings and {} regions ({}, {} and {} "
                     "released, {} stray bytes unmapped); {} sessions wait {} s for "
                     "session.resume",
                     report.containers, report.mappings, report.regions, report.released_containers,
                     report.released_mappings, report.released_regions, report.stray_bytes,
                     report.detached_sessions, grace.count())});
  return report;
}

size_t Service::HandOver() {
  std::vector<ContainerSlot> all = TakeEverything();
  size_t handed = 0;
  for (ContainerSlot& slot : all) {
    Result<uint64_t> invalidated = uint64_t{0};
    {
      std::lock_guard clock(slot.managed->mu());  // waits for a map in progress
      invalidated = slot.managed->HandOver();
    }
    if (!invalidated) {
      journal::Emit({.kind = journal::Kind::kRestartReleased,
                     .message = fmt::format("container {} cannot be handed over ({}): released",
                                            slot.id, invalidated.error().message()),
                     .uid = slot.owner_uid,
                     .container = slot.id,
                     .error_number = invalidated.error().code});
      Teardown(slot);
      continue;
    }
    ++handed;
    journal::Emit({.kind = journal::Kind::kContainerHandedOver,
                   .message = fmt::format("container {} handed over ({} bytes of mappings "
                                          "invalidated)",
                                          slot.id, *invalidated),
                   .uid = slot.owner_uid,
                   .container = slot.id});
    std::lock_guard lock(mu_);
    (void)ForgetMappingsLocked(slot.id);  // the successor's now: their fds stay in the store
    for (int group : slot.managed->groups()) {
      groups_held_.erase(group);
    }
    UnreserveLocked(slot.owner_uid, 0, 0, 1);
  }
  return handed;
}

}  // namespace vfiod::service
