#include "service/stats.h"

#include <algorithm>

namespace vfiod::service {

namespace {

void AddRequest(StatsSnapshot& s, const std::string& method, uint64_t micros, bool failed) {
  MethodStats& m = s.by_method[method];
  ++m.calls;
  m.total_us += micros;
  m.max_us = std::max(m.max_us, micros);
  ++s.requests;
  if (failed) {
    ++m.errors;
    ++s.errors;
  }
}

void AddWork(DmaCounters& c, uint64_t bytes, uint64_t ioctls) {
  ++c.calls;
  c.bytes += bytes;
  c.ioctls += ioctls;
}

}  // namespace

void Stats::RecordRequest(uid_t uid, const std::string& method, uint64_t micros, bool failed) {
  std::lock_guard lock(mu_);
  AddRequest(data_, method, micros, failed);
  AddRequest(by_uid_[uid], method, micros, failed);
}

void Stats::RecordMap(uid_t uid, uint64_t bytes, uint64_t ioctls) {
  std::lock_guard lock(mu_);
  AddWork(data_.map, bytes, ioctls);
  AddWork(by_uid_[uid].map, bytes, ioctls);
}

void Stats::RecordUnmap(uid_t uid, uint64_t bytes, uint64_t ioctls) {
  std::lock_guard lock(mu_);
  AddWork(data_.unmap, bytes, ioctls);
  AddWork(by_uid_[uid].unmap, bytes, ioctls);
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
