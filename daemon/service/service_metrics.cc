// The view behind the Prometheus metrics (metrics.h): status, stats, and the
// per-user and per-container figures, taken under one hold of mu_ so they
// agree with one another (the users' figures add up to the totals).
#include "service/managed_container.h"
#include "service/service.h"

namespace vfiod::service {

MetricsView Service::MetricsOf(std::optional<uid_t> uid) const {
  auto counts = [&](uid_t of) { return !uid || of == *uid; };
  MetricsView m;
  m.status = StatusHeader();
  std::lock_guard lock(mu_);
  FillStatusLocked(m.status, uid);
  // Maps and unmaps are recorded under mu_ with the mapping table's change,
  // so the counters agree with the tables (lock order: mu_, then the stats').
  m.stats = stats_.Snapshot(uid);
  for (const auto& [id, slot] : containers_) {
    if (slot.managed && counts(slot.owner_uid)) {
      m.containers.push_back(ViewLocked(slot));  // leaf locks only
      ++m.users[slot.owner_uid].containers;
    }
  }
  ForEachMappingLocked([&](MappingId, const MappingSlot& slot) {
    if (counts(slot.owner_uid)) {
      UserUsageView& use = m.users[slot.owner_uid];
      ++use.mappings;
      use.locked_bytes += slot.charged;
    }
  });
  for (const auto& [holder, bytes] : held_->ByUid()) {
    if (counts(holder)) {
      UserUsageView& use = m.users[holder];
      use.region_locked_bytes += bytes;
      use.locked_bytes += bytes;
    }
  }
  // held_ is a leaf lock that a Hold may change without mu_: take the
  // totals from the same reading as the users' figures, so they add up.
  m.status.locked_bytes = 0;
  m.status.region_locked_bytes = 0;
  for (const auto& [holder, use] : m.users) {
    m.status.locked_bytes += use.locked_bytes;
    m.status.region_locked_bytes += use.region_locked_bytes;
  }
  return m;
}

MetricsView Service::MetricsFor(const Caller& caller) {
  RecheckLingering();
  return MetricsOf(caller.is_root() ? std::nullopt : std::optional(caller.identity.uid));
}

}  // namespace vfiod::service
