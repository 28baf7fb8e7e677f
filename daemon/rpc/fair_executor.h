// A fixed set of threads running blocking work in FairQueue order: per-user
// queues, round robin across users, a cap on one user's tasks running at once.
//
// Threads: Post may be called from any thread. The queue and the stop flag
// are guarded by mu_; each task runs on one of the executor's own threads with
// no lock held.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "rpc/fair_queue.h"

namespace vfiod::rpc {

class FairExecutor {
 public:
  /// The cap that keeps one worker out of any single user's reach: `threads`
  /// - 1, and 1 for a single thread (which then cannot protect anybody).
  [[nodiscard]] static std::size_t DefaultCap(std::size_t threads) {
    return threads > 1 ? threads - 1 : 1;
  }

  /// Starts `threads` threads (0 counts as 1), named `name` (at most 15
  /// characters are shown by ps). `cap` as FairQueue's (0: DefaultCap).
  FairExecutor(std::size_t threads, std::size_t cap, std::string name);
  /// Join()s.
  ~FairExecutor();
  FairExecutor(const FairExecutor&) = delete;
  FairExecutor& operator=(const FairExecutor&) = delete;
  FairExecutor(FairExecutor&&) = delete;
  FairExecutor& operator=(FairExecutor&&) = delete;

  /// Queues `task` for `tenant`; it runs on one of the threads once the
  /// queue's order lets it. Thread-safe, tasks included. After Join() has
  /// returned, `task` is destroyed without running.
  void Post(Tenant tenant, Task task);
  /// Runs every task queued (and any they post), then ends the threads.
  /// Idempotent. Must not be called from one of the executor's threads.
  void Join();

  [[nodiscard]] std::size_t cap() const { return cap_; }

 private:
  void Work();

  const std::size_t cap_;
  std::mutex mu_;
  std::condition_variable wake_;      // a task may start, or stopping_ was set
  FairQueue queue_;                   // guarded by mu_
  bool stopping_ = false;             // guarded by mu_
  std::vector<std::thread> threads_;  // started by the constructor, joined by Join()
};

}  // namespace vfiod::rpc
