// Request and DMA counters served by the `stats` method: the daemon's
// totals (root's view) and the same counters per calling uid (what a
// non-root caller sees: its own requests and its own maps and unmaps).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>

namespace vfiod::service {

/// Per-method request counters.
struct MethodStats {
  uint64_t calls = 0;
  uint64_t errors = 0;
  uint64_t total_us = 0;
  uint64_t max_us = 0;
};

/// Totals of map or unmap work.
struct DmaCounters {
  uint64_t calls = 0;
  uint64_t bytes = 0;
  uint64_t ioctls = 0;
};

/// A consistent copy of every counter.
struct StatsSnapshot {
  uint64_t requests = 0;
  uint64_t errors = 0;
  std::map<std::string, MethodStats> by_method;
  DmaCounters map;
  DmaCounters unmap;
};

/// Thread-safe counters; every member is guarded by mu_. Recording is cheap
/// (one lock, two map lookups) so it is done on whichever thread ran the request.
class Stats {
 public:
  /// Counts one request of `method` by `uid` that took `micros` and failed when `failed`.
  void RecordRequest(uid_t uid, const std::string& method, uint64_t micros, bool failed);
  /// Counts one map (or unmap) of `bytes` that took `ioctls` ioctls, done for `uid`.
  void RecordMap(uid_t uid, uint64_t bytes, uint64_t ioctls);
  void RecordUnmap(uid_t uid, uint64_t bytes, uint64_t ioctls);
  /// The daemon's totals (no uid), or the counters of `uid` alone.
  [[nodiscard]] StatsSnapshot Snapshot(std::optional<uid_t> uid = std::nullopt) const;

 private:
  mutable std::mutex mu_;
  StatsSnapshot data_;                     // guarded by mu_
  std::map<uid_t, StatsSnapshot> by_uid_;  // guarded by mu_
};

}  // namespace vfiod::service
