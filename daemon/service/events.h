// Small helpers for the service's key events (journal/event.h).
#pragma once

#include <string>
#include <vector>

#include "journal/sink.h"
#include "service/policy.h"

namespace vfiod::service {

/// The BDFs of `devices`, for an event's VFIOD_BDF fields.
[[nodiscard]] inline std::vector<std::string> BdfsOf(const std::vector<DeviceId>& devices) {
  std::vector<std::string> out;
  out.reserve(devices.size());
  for (const DeviceId& d : devices) {
    out.push_back(d.bdf);
  }
  return out;
}

}  // namespace vfiod::service
