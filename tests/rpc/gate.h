// A gate for the rpc tests: holds handlers or tasks until the test opens it,
// and counts the ones waiting there.
#pragma once

#include <chrono>
#include <condition_variable>
#include <mutex>

namespace vfiod::rpc::testing {

class Gate {
 public:
  /// Blocks until Open() (at once if it ran already).
  void Wait() {
    std::unique_lock lock(mu_);
    ++waiting_;
    changed_.notify_all();
    changed_.wait(lock, [this] { return open_; });
    --waiting_;
  }
  void Open() {
    std::lock_guard lock(mu_);
    open_ = true;
    changed_.notify_all();
  }
  /// Waits until exactly `n` callers wait here; false after `guard`.
  bool AwaitWaiting(int n, std::chrono::seconds guard = std::chrono::seconds(60)) {
    std::unique_lock lock(mu_);
    return changed_.wait_for(lock, guard, [&] { return waiting_ == n; });
  }
  int waiting() {
    std::lock_guard lock(mu_);
    return waiting_;
  }

 private:
  std::mutex mu_;
  std::condition_variable changed_;
  bool open_ = false;
  int waiting_ = 0;
};

}  // namespace vfiod::rpc::testing
