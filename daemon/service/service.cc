// Sessions, containers and the daemon-wide views. DMA operations are in
// service_dma.cc, device operations in service_devices.cc.
#include "service/service.h"

#include <malloc.h>
#include <spdlog/fmt/fmt.h>
#include <spdlog/spdlog.h>
#include <sys/random.h>

#include <algorithm>
#include <cerrno>
#include <random>

#include "dma/engine.h"
#include "journal/user_budget.h"
#include "service/events.h"
#include "service/managed_container.h"
#include "service/release_watcher.h"

namespace vfiod::service {

namespace {
constexpr char kVersion[] = "0.1.0";
constexpr int kApiVersion = 1;

/// 128 random bits in lowercase hex: a session's resume token. From
/// getrandom(); std::random_device only if that fails (it should not).
std::string NewSessionToken() {
  unsigned char bytes[lifecycle::kSessionTokenLength / 2];
  size_t got = 0;
  while (got < sizeof bytes) {
    ssize_t n = ::getrandom(bytes + got, sizeof bytes - got, 0);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      std::random_device device;
      for (; got < sizeof bytes; ++got) {
        bytes[got] = static_cast<unsigned char>(device());
      }
      break;
    }
    got += static_cast<size_t>(n);
  }
  static constexpr char kHex[] = "0123456789abcdef";
  std::string token;
  for (unsigned char b : bytes) {
    token += kHex[b >> 4];
    token += kHex[b & 15];
  }
  return token;
}
}  // namespace

Service::Service(Config config, std::unique_ptr<kernel::Kernel> kernel, vfio::PciSysfs sysfs)
    : config_(std::move(config)),
      kernel_(std::move(kernel)),
      sysfs_(std::move(sysfs)),
      policy_(config_.policy),
      started_(std::chrono::steady_clock::now()),
      max_locked_bytes_(ResolveMaxLockedBytes(config_.limits)),
      fd_budget_(config_.limits.max_stored_fds, config_.limits.max_stored_fds_per_user) {
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
  auto watcher = ReleaseWatcher::Start(
      {[this](ContainerId c, const std::string& bdf) { OnReleaseRequested(c, bdf); },
       [this](ContainerId c) { RevokeForRelease(c); }});
  if (watcher) {
    watcher_ = std::move(*watcher);
  } else {
    spdlog::error("the kernel's requests to release devices will go unheard: {}",
                  watcher.error().message());
  }
}

Service::~Service() {
  watcher_.reset();  // no callback runs from here on
  Shutdown();
}

SessionId Service::OpenSession(const Identity& identity) {
  std::lock_guard lock(mu_);
  SessionId id = next_id_++;
  sessions_.emplace(id, Session{identity, 0, NewSessionToken(), false, {}});
  spdlog::debug("session {} opened (uid {})", id, identity.uid);
  return id;
}

void Service::CloseSession(SessionId session) {
  ChangeNote note{*this};
  std::vector<ContainerSlot> owned;
  std::vector<MappingRef> loose;
  // The session's regions leave the table under mu_ but are released after
  // it: the last reference unmaps the daemon's view, which must not hold mu_.
  std::vector<std::shared_ptr<const dma::Backing>> regions;
  uid_t uid = 0;
  {
    std::lock_guard lock(mu_);
    auto closing = sessions_.find(session);
    if (closing == sessions_.end()) {
      return;
    }
    if (closing->second.detached) {
      detached_.erase(closing->second.token);
    }
    uid = closing->second.identity.uid;
    sessions_.erase(closing);
    for (auto it = regions_.begin(); it != regions_.end();) {
      if (it->second.owner == session) {
        regions.push_back(std::move(it->second.backing));
        it = regions_.erase(it);
      } else {
        ++it;
      }
    }
    for (auto it = containers_.begin(); it != containers_.end();) {
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
      auto c = containers_.find(slot.container);
      if (slot.owner == session && c != containers_.end() && c->second.managed) {
        loose.push_back(RefLocked(id, slot));
      }
    });
  }
  // Mappings the session made in containers that survive it (named ones).
  for (const MappingRef& m : loose) {
    std::lock_guard clock(m.managed->mu());
    const auto started = std::chrono::steady_clock::now();
    auto unmapped = m.managed->Unmap(m.engine_id);
    const uint64_t took_us = MicrosSince(started);
    std::lock_guard lock(mu_);
    if (FindMappingLocked(m.id) != nullptr) {
      if (unmapped) {
        stats_.RecordUnmap(m.owner_uid, unmapped->bytes, unmapped->ioctls, took_us);
      }
      RemoveMappingLocked(m.id);
    }
  }
  for (const MappingRef& m : loose) {
    RemoveMappingFd(m.id);
  }
  uint64_t bytes = 0;
  for (auto& slot : owned) {
    bytes += Teardown(slot);
  }
  if (owned.empty() && loose.empty()) {
    spdlog::debug("session {} closed (uid {}): nothing to release", session, uid);
  } else {
    journal::LogFor(uid, journal::Level::kInfo,
                    "session {} closed (uid {}): {} containers released, {} mappings unmapped ({} "
                    "bytes)",
                    session, uid, owned.size(), loose.size(), bytes);
  }
  if (!owned.empty() || !loose.empty() || !regions.empty()) {
    owned.clear();  // the last references to the torn-down containers
    loose.clear();
    regions.clear();
    // glibc keeps freed heap for reuse; a session that held many mappings
    // leaves megabytes of it. Once per session, off every lock.
    ::malloc_trim(0);
  }
}

std::vector<Service::ContainerSlot> Service::TakeEverything() {
  std::vector<ContainerSlot> all;
  std::lock_guard lock(mu_);
  for (auto& [id, slot] : containers_) {
    if (slot.managed) {
      all.push_back(std::move(slot));
    }
  }
  containers_.clear();
  sessions_.clear();
  detached_.clear();
  regions_.clear();
  return all;
}

void Service::Shutdown() {
  for (auto& slot : TakeEverything()) {
    Teardown(slot);
  }
}

uint64_t Service::Teardown(const ContainerSlot& slot) {
  dma::UnmapReport unmapped;
  uint64_t took_us = 0;
  std::map<int, std::set<uid_t>> handed;
  {
    std::lock_guard clock(slot.managed->mu());  // waits for a map in progress
    if (config_.reset.on_destroy && !slot.managed->closed()) {
      ResetOnDestroy(*slot.managed);
    }
    std::vector<std::string> devices;  // before Close, which lets go of them
    for (const ManagedContainer::HeldDevice& d : slot.managed->held_devices()) {
      devices.push_back(d.bdf);
    }
    const auto started = std::chrono::steady_clock::now();
    unmapped = slot.managed->Close();
    took_us = MicrosSince(started);
    handed = slot.managed->handouts();
    RemoveContainerFds(slot.id, slot.managed->groups(), devices);
  }
  std::vector<MappingId> gone_fds;
  bool lingers = false;
  {
    std::lock_guard lock(mu_);
    std::vector<MappingId> gone = ForgetMappingsLocked(slot.id);
    releases_.erase(slot.id);
    gone_fds = gone;
    LingeringSlot held{slot.owner_uid, {}, {}, std::chrono::steady_clock::now(), false};
    for (int group : slot.managed->groups()) {
      if (auto h = handed.find(group); h != handed.end()) {
        held.groups.push_back(group);  // stays in groups_held_ until re-checked
        held.holders.insert(h->second.begin(), h->second.end());
      } else {
        groups_held_.erase(group);
      }
    }
    UnreserveLocked(slot.owner_uid, 0, 0, 1);
    if (!held.groups.empty()) {
      for (uid_t holder : held.holders) {
        usage_[holder].containers += 1;  // charged while it may hold the group
      }
      lingering_[slot.id] = std::move(held);
      lingers = true;
    }
    if (!gone.empty()) {
      stats_.RecordUnmap(slot.owner_uid, unmapped.bytes, unmapped.ioctls, took_us);
    }
    journal::Emit({.kind = journal::Kind::kContainerDestroyed,
                   .message = fmt::format("container {} closed ({} mappings, {} bytes unmapped)",
                                          slot.id, gone.size(), unmapped.bytes),
                   .uid = slot.owner_uid,
                   .container = slot.id,
                   .bdfs = BdfsOf(slot.devices),
                   .bytes = unmapped.bytes});
  }
  for (MappingId id : gone_fds) {
    RemoveMappingFd(id);
  }
  if (watcher_) {
    watcher_->Forget(slot.id);  // its request eventfds close, a pending revoke is dropped
  }
  if (lingers) {
    RecheckLingering();  // most clients closed their device fds already
  }
  return unmapped.bytes;
}

StatusView Service::Status() const { return StatusOf(std::nullopt); }

StatusView Service::StatusFor(const Caller& caller) {
  RecheckLingering();
  return StatusOf(caller.is_root() ? std::nullopt : std::optional(caller.identity.uid));
}

StatusView Service::StatusOf(std::optional<uid_t> uid) const {
  StatusView s = StatusHeader();
  std::lock_guard lock(mu_);
  FillStatusLocked(s, uid);
  return s;
}

StatusView Service::StatusHeader() const {
  StatusView s;
  s.version = kVersion;
  s.kernel = kernel_->name();
  s.api_version = kApiVersion;
  s.extensions = extensions_;
  s.uptime_s = static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() - started_)
          .count());
  s.max_locked_bytes = max_locked_bytes_;
  s.fd_store = has_fd_store();
  if (s.fd_store) {
    s.max_stored_fds = fd_budget_.max();
    s.max_stored_fds_per_user = fd_budget_.max_per_user();
  }
  return s;
}

void Service::FillStatusLocked(StatusView& s, std::optional<uid_t> uid) const {
  auto counts = [&](uid_t of) { return !uid || of == *uid; };
  for (const auto& [id, session] : sessions_) {
    if (counts(session.identity.uid)) {
      ++(session.detached ? s.detached_sessions : s.clients);
    }
  }
  for (const auto& [id, c] : containers_) {
    if (c.managed && counts(c.owner_uid)) {
      ++s.containers;
      s.dma_entries += c.managed->usage().entries;  // a leaf lock
    }
  }
  if (s.fd_store) {
    s.stored_fds_charged = uid ? fd_budget_.charged(*uid) : fd_budget_.charged();  // a leaf lock
  }
  s.region_locked_bytes = uid ? held_->Of(*uid) : held_->Total();
  s.locked_bytes = s.region_locked_bytes;
  ForEachMappingLocked([&](MappingId, const MappingSlot& m) {
    if (counts(m.owner_uid)) {
      ++s.mappings;
      s.locked_bytes += m.charged;
    }
  });
  s.lingering = LingeringViewsLocked(uid);
}

StatsSnapshot Service::StatsFor(const Caller& caller) const {
  return stats_.Snapshot(caller.is_root() ? std::nullopt : std::optional(caller.identity.uid));
}

SResult<void> Service::CheckMethodAllowed(const Caller& caller, const std::string& method) const {
  if (!caller.is_root() && policy_.IsRootOnly(method)) {
    return Refuse(ErrorKind::kPermission, EPERM, method,
                  "the configuration makes this method root-only (policy.root_only)");
  }
  return {};
}

// --- registry helpers (mu_ held) ------------------------------------------------

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

}  // namespace vfiod::service
