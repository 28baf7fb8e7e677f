// Load and chaos against a running vfiod, through the client library only:
// many concurrent clients each sending a mix of requests (map and free of
// slices of a registered region, dma.info, dma.list, ping), and client
// processes SIGKILLed at random points of a map. Plus what to compare before
// and after: the daemon's status counts, open fds and memory.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <string>

#include "client/vfiod_client.h"

namespace vfiod::load {

/// One load run: `clients` threads, each with its own connection, sending
/// `requests` requests in all (setup and teardown calls not counted).
struct MixedLoadConfig {
  std::string socket;
  std::string container;  ///< a named container every client attaches
  int clients = 8;
  uint64_t requests = 1000;         ///< per client
  uint64_t region_bytes = 1 << 20;  ///< each client's registered memfd
  uint32_t max_slice_pages = 16;    ///< a map takes 1 .. this many 4 KiB pages
  uint32_t max_held = 4;            ///< mappings a client keeps at most
  uint64_t seed = 1;
};

struct OpFigures {
  uint64_t calls = 0;
  uint64_t errors = 0;
  double total_ms = 0;
  double max_ms = 0;
};

struct MixedLoadReport {
  uint64_t requests = 0;  ///< counted requests sent, every client
  uint64_t errors = 0;
  double seconds = 0;  ///< wall time of the counted requests
  std::map<std::string, OpFigures> by_op;
  std::string first_error;  ///< "" when none
  [[nodiscard]] double RequestsPerSecond() const { return seconds > 0 ? requests / seconds : 0; }
};

/// Runs the mixed load; returns when every client is done (each frees its
/// mappings, unregisters its region and disconnects at the end).
[[nodiscard]] MixedLoadReport RunMixedLoad(const MixedLoadConfig& config);

/// Client processes killed mid-map: each child connects, attaches the named
/// container, registers a memfd and sends maps of it until SIGKILLed after a
/// random delay (so before, during or after a map, and sometimes with a
/// mapping made that only the session close can free).
struct KillConfig {
  std::string socket;
  std::string container;
  int kills = 100;
  int concurrent = 8;               ///< children alive at once
  uint64_t region_bytes = 4 << 20;  ///< each child's memfd, mapped whole
  uint32_t max_delay_us = 3000;     ///< the kill comes 0 .. this after "ready"
  uint64_t seed = 1;
};

struct KillReport {
  int killed = 0;
  int never_ready = 0;  ///< children that died before signalling (a failure)
  double seconds = 0;
};

[[nodiscard]] KillReport RunKills(const KillConfig& config);

/// What the daemon process holds, from /proc/PID.
struct Footprint {
  int fds = -1;           ///< entries of /proc/PID/fd
  uint64_t rss_kib = 0;   ///< VmRSS
  uint64_t peak_kib = 0;  ///< VmHWM
};
[[nodiscard]] Footprint FootprintOf(pid_t pid);

/// An environment knob: the integer in `name`, or `fallback` when unset.
[[nodiscard]] uint64_t EnvOr(const char* name, uint64_t fallback);

}  // namespace vfiod::load
