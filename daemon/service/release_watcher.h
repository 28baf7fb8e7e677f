// The thread that hears the kernel ask for devices back: it polls the request
// eventfds (VFIO_PCI_REQ_IRQ_INDEX) of the devices vfiod holds, and keeps the
// grace deadlines of the releases in progress, calling the service back for
// each (service_release.cc says what the service does with them).
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "proto/result.h"
#include "proto/unique_fd.h"
#include "service/views.h"

namespace vfiod::service {

class ReleaseWatcher {
 public:
  using Clock = std::chrono::steady_clock;
  /// Both run on the watcher's thread, with no lock of the watcher held (they
  /// may call Watch, ExpireAt and Forget), one at a time.
  struct Callbacks {
    /// The kernel signalled the request eventfd of `bdf` in `container`
    /// (once per signal; Linux repeats it every 10 s while it waits).
    std::function<void(ContainerId container, const std::string& bdf)> requested;
    /// The deadline ExpireAt set for `container` has come.
    std::function<void(ContainerId container)> expired;
  };

  /// Starts the thread. Errors: the wake-up eventfd cannot be made (EMFILE).
  [[nodiscard]] static Result<std::unique_ptr<ReleaseWatcher>> Start(Callbacks callbacks);
  /// Stops and joins the thread; must not run on it (from a callback).
  ~ReleaseWatcher();
  ReleaseWatcher(const ReleaseWatcher&) = delete;
  ReleaseWatcher& operator=(const ReleaseWatcher&) = delete;
  ReleaseWatcher(ReleaseWatcher&&) = delete;
  ReleaseWatcher& operator=(ReleaseWatcher&&) = delete;

  /// Watches `eventfd` (the watcher's own copy: it closes it) for requests
  /// of `bdf` in `container`. Thread-safe.
  void Watch(ContainerId container, std::string bdf, UniqueFd eventfd);
  /// Calls `expired(container)` at `when` (an earlier deadline of it is
  /// replaced). Thread-safe.
  void ExpireAt(ContainerId container, Clock::time_point when);
  /// Forgets `container`: its deadline is dropped and its eventfds are
  /// closed before this returns (by the watcher's thread, once a poll in
  /// progress returned: waits for it, so call it with no lock held that a
  /// callback takes). Thread-safe; from a callback it closes them itself.
  void Forget(ContainerId container);
  /// How many eventfds are watched (forgotten ones not yet closed count): a
  /// test's leak check.
  [[nodiscard]] size_t watched() const;

 private:
  struct Entry {
    ContainerId container = 0;
    std::string bdf;
    UniqueFd eventfd;
    bool forgotten = false;  ///< closed by the thread at its next turn
  };
  ReleaseWatcher(Callbacks callbacks, UniqueFd wake);
  void Run();
  void Wake() const;

  const Callbacks callbacks_;
  const UniqueFd wake_;  // an eventfd: written to end a poll early
  mutable std::mutex mu_;
  std::vector<Entry> entries_;                          // guarded by mu_; erased by the thread only
  std::map<ContainerId, Clock::time_point> deadlines_;  // guarded by mu_
  bool stop_ = false;                                   // guarded by mu_
  uint64_t turns_ = 0;              // loop turns begun (forgotten entries closed); guarded by mu_
  std::condition_variable turned_;  // turns_ moved on, or the thread stopped
  std::thread thread_;              // declared last: started once the rest exists
};

}  // namespace vfiod::service
