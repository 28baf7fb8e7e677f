// Request and DMA counters served by the `stats` method: the daemon's
// totals (root's view) and the same counters per calling uid (what a
// non-root caller sees: its own requests and its own maps and unmaps).
//
// Thread-safety: one mutex (Stats::mu_) guards every figure here, the
// totals and the per-uid copies alike; a Snapshot is a consistent copy taken
// under it. Nothing else owns or caches these figures.
#pragma once

#include <sys/types.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

#include "service/stages.h"

namespace vfiod::service {

/// A latency histogram with fixed bucket bounds (microseconds, inclusive
/// upper bounds, as Prometheus' `le`): 100 us to 5 min, for maps of a page to
/// maps of hundreds of GiB. `counts[i]` counts observations in bucket i alone
/// (not cumulative); the last slot counts those above every bound (+Inf).
struct LatencyHistogram {
  static constexpr std::array<uint64_t, 19> kBoundsUs = {
      100,       250,        500,        1'000,      2'500,      5'000,     10'000,
      25'000,    50'000,     100'000,    250'000,    500'000,    1'000'000, 2'500'000,
      5'000'000, 10'000'000, 30'000'000, 60'000'000, 300'000'000};
  std::array<uint64_t, kBoundsUs.size() + 1> counts{};
  uint64_t count = 0;   ///< observations: the sum of counts
  uint64_t sum_us = 0;  ///< their total
  void Observe(uint64_t micros);
};

/// Microseconds from `start` to now (steady clock), for the Record calls.
[[nodiscard]] uint64_t MicrosSince(std::chrono::steady_clock::time_point start);

/// Per-method request counters.
struct MethodStats {
  uint64_t calls = 0;
  uint64_t errors = 0;
  uint64_t total_us = 0;
  uint64_t max_us = 0;
  /// errors by the error's code name (wire::CodeName: "not_found", ...);
  /// the values add up to `errors`.
  std::map<std::string, uint64_t> errors_by_code;
  /// Nanoseconds per stage (stages.h) over the calls: the in-handler stages
  /// (lookup to other) add up to the handler's time, total_us (to rounding);
  /// parse and queue come before it, reply after it.
  StageTimes stage_ns{};
};

/// Totals of map or unmap work.
struct DmaCounters {
  uint64_t calls = 0;
  uint64_t bytes = 0;
  uint64_t ioctls = 0;
  LatencyHistogram latency;  ///< one observation per call: latency.count == calls
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
/// (one lock, a few map lookups) so it is done on whichever thread ran the request.
class Stats {
 public:
  /// Counts one request of `method` by `uid` that took `micros`; it failed
  /// when `error_code` (the error's code name) is not empty.
  /// `stages`, when given, are the call's stage times (parse, queue and the
  /// handler's own; StageClock::Close already run).
  void RecordRequest(uid_t uid, const std::string& method, uint64_t micros,
                     std::string_view error_code, const StageTimes* stages = nullptr);
  /// Adds the reply stage of a call of `method` by `uid` (recorded once the
  /// reply is on its way, after RecordRequest).
  void RecordReply(uid_t uid, const std::string& method, uint64_t nanos);
  /// Counts one map of `bytes` that took `ioctls` ioctls and `micros` (the
  /// map's work under its container's mutex: pinning and MAP_DMA), done for `uid`.
  void RecordMap(uid_t uid, uint64_t bytes, uint64_t ioctls, uint64_t micros);
  /// Counts one unmap (a dma.free, a mapping released with its session, or
  /// all of a container's mappings at its teardown) of `bytes`.
  void RecordUnmap(uid_t uid, uint64_t bytes, uint64_t ioctls, uint64_t micros);
  /// The daemon's totals (no uid), or the counters of `uid` alone.
  [[nodiscard]] StatsSnapshot Snapshot(std::optional<uid_t> uid = std::nullopt) const;

 private:
  mutable std::mutex mu_;
  StatsSnapshot data_;                     // guarded by mu_
  std::map<uid_t, StatsSnapshot> by_uid_;  // guarded by mu_
};

}  // namespace vfiod::service
