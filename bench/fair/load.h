// The two sides of the fairness benchmark: the other user (a child process at
// another uid timing small calls) and the flood (threads of this process,
// root, mapping large buffers on several connections until told to stop).
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "common/stats.h"
#include "proto/unique_fd.h"

namespace vfiod::bench {

/// A child process at `uid` with its own connection and container (on
/// `device`), running rounds of ping, a 4 KiB dma.alloc and its dma.free
/// when asked. Fork it before any thread is started.
class OtherUser {
 public:
  OtherUser(const std::string& socket, const std::string& device, uid_t uid);
  ~OtherUser();
  OtherUser(const OtherUser&) = delete;
  OtherUser& operator=(const OtherUser&) = delete;
  OtherUser(OtherUser&&) = delete;
  OtherUser& operator=(OtherUser&&) = delete;

  /// Runs `rounds` rounds in the child; the latencies in microseconds by
  /// call ("ping", "alloc", "free"), or {"error": ...}.
  nlohmann::json Run(int rounds);

 private:
  pid_t pid_ = -1;
  UniqueFd to_child_;    // orders; closed first by the destructor: the child's EOF
  UniqueFd from_child_;  // the child's answers
};

/// What a flood does: `connections` connections sharing one named container
/// on `device`, each mapping `inflight` buffers of `size` bytes at once (one
/// batch), then freeing them, over and over.
struct FloodPlan {
  std::string socket;
  std::string device;
  int connections = 4;
  int inflight = 2;
  uint64_t size = 1 << 20;
  std::string backing = "4k";
};

/// Runs a FloodPlan on threads from Start() until Stop().
class Flood {
 public:
  explicit Flood(FloodPlan plan) : plan_(std::move(plan)) {}
  ~Flood() { Stop(); }
  Flood(const Flood&) = delete;
  Flood& operator=(const Flood&) = delete;
  Flood(Flood&&) = delete;
  Flood& operator=(Flood&&) = delete;

  /// Creates the container and starts the threads; returns once a first map
  /// is done. An error message, or "".
  std::string Start();
  /// Stops after the batches in flight; returns the figures (maps done, bytes,
  /// errors, seconds).
  nlohmann::json Stop();

 private:
  void Loop(uint64_t container);

  FloodPlan plan_;
  uint64_t container_ = 0;  // the named container, destroyed by Stop()
  std::vector<std::thread> threads_;
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> maps_{0};
  std::atomic<uint64_t> errors_{0};
  Clock::time_point started_;
  nlohmann::json result_;
};

}  // namespace vfiod::bench
