#include "service/stats.h"

#include <algorithm>

namespace vfiod::service {

void Stats::RecordRequest(const std::string& method, uint64_t micros, bool failed) {
  std::lock_guard lock(mu_);
  MethodStats& m = data_.by_method[method];
  ++m.calls;
  m.total_us += micros;
  m.max_us = std::max(m.max_us, micros);
  ++data_.requests;
  if (failed) {
    ++m.errors;
    ++data_.errors;
  }
}

void Stats::RecordMap(uint64_t bytes, uint64_t ioctls) {
  std::lock_guard lock(mu_);
  ++data_.map.calls;
  data_.map.bytes += bytes;
  data_.map.ioctls += ioctls;
}

void Stats::RecordUnmap(uint64_t bytes, uint64_t ioctls) {
  std::lock_guard lock(mu_);
  ++data_.unmap.calls;
  data_.unmap.bytes += bytes;
  data_.unmap.ioctls += ioctls;
}

StatsSnapshot Stats::Snapshot() const {
  std::lock_guard lock(mu_);
  return data_;
}

}  // namespace vfiod::service
