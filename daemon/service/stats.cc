#include "service/stats.h"

#include <algorithm>

namespace vfiod::service {

uint64_t MicrosSince(std::chrono::steady_clock::time_point start) {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(
                                   std::chrono::steady_clock::now() - start)
                                   .count());
}

void LatencyHistogram::Observe(uint64_t micros) {
  const auto* bound = std::lower_bound(kBoundsUs.begin(), kBoundsUs.end(), micros);
  ++counts[static_cast<size_t>(bound - kBoundsUs.begin())];
  ++count;
  sum_us += micros;
}

namespace {

void AddRequest(StatsSnapshot& s, const std::string& method, uint64_t micros,
                std::string_view error_code, const StageTimes* stages) {
  MethodStats& m = s.by_method[method];
  if (stages != nullptr) {
    for (std::size_t i = 0; i < kStageCount; ++i) {
      m.stage_ns[i] += (*stages)[i];
    }
  }
  ++m.calls;
  m.total_us += micros;
  m.max_us = std::max(m.max_us, micros);
  ++s.requests;
  if (!error_code.empty()) {
    ++m.errors;
    ++m.errors_by_code[std::string(error_code)];
    ++s.errors;
  }
}

void AddWork(DmaCounters& c, uint64_t bytes, uint64_t ioctls, uint64_t micros) {
  ++c.calls;
  c.bytes += bytes;
  c.ioctls += ioctls;
  c.latency.Observe(micros);
}

}  // namespace

void Stats::RecordRequest(uid_t uid, const std::string& method, uint64_t micros,
                          std::string_view error_code, const StageTimes* stages) {
  std::lock_guard lock(mu_);
  AddRequest(data_, method, micros, error_code, stages);
  AddRequest(by_uid_[uid], method, micros, error_code, stages);
}

void Stats::RecordReply(uid_t uid, const std::string& method, uint64_t nanos) {
  constexpr auto kAt = static_cast<std::size_t>(Stage::kReply);
  std::lock_guard lock(mu_);
  data_.by_method[method].stage_ns[kAt] += nanos;
  by_uid_[uid].by_method[method].stage_ns[kAt] += nanos;
}

void Stats::RecordMap(uid_t uid, uint64_t bytes, uint64_t ioctls, uint64_t micros) {
  std::lock_guard lock(mu_);
  AddWork(data_.map, bytes, ioctls, micros);
  AddWork(by_uid_[uid].map, bytes, ioctls, micros);
}

void Stats::RecordUnmap(uid_t uid, uint64_t bytes, uint64_t ioctls, uint64_t micros) {
  std::lock_guard lock(mu_);
  AddWork(data_.unmap, bytes, ioctls, micros);
  AddWork(by_uid_[uid].unmap, bytes, ioctls, micros);
}

StatsSnapshot Stats::Snapshot(std::optional<uid_t> uid) const {
  std::lock_guard lock(mu_);
  if (!uid) {
    return data_;
  }
  auto it = by_uid_.find(*uid);
  return it == by_uid_.end() ? StatsSnapshot{} : it->second;
}

}  // namespace vfiod::service
