#include "service/release_watcher.h"

#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <cstring>

namespace vfiod::service {

namespace {

/// Empties an eventfd; false when nothing was pending.
bool Drain(int fd) {
  uint64_t n = 0;
  return ::read(fd, &n, sizeof n) == static_cast<ssize_t>(sizeof n);
}

}  // namespace

Result<std::unique_ptr<ReleaseWatcher>> ReleaseWatcher::Start(Callbacks callbacks) {
  UniqueFd wake(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!wake) {
    return ErrnoError("eventfd (release watcher)");
  }
  return std::unique_ptr<ReleaseWatcher>(new ReleaseWatcher(std::move(callbacks), std::move(wake)));
}

ReleaseWatcher::ReleaseWatcher(Callbacks callbacks, UniqueFd wake)
    : callbacks_(std::move(callbacks)), wake_(std::move(wake)), thread_([this] { Run(); }) {}

ReleaseWatcher::~ReleaseWatcher() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
    turned_.notify_all();
  }
  Wake();
  thread_.join();
}

void ReleaseWatcher::Wake() const {
  const uint64_t one = 1;
  // Fails only when the counter is about to overflow: the thread is awake then.
  (void)!::write(wake_.get(), &one, sizeof one);
}

void ReleaseWatcher::Watch(ContainerId container, std::string bdf, UniqueFd eventfd) {
  {
    std::lock_guard lock(mu_);
    entries_.push_back(Entry{container, std::move(bdf), std::move(eventfd), false});
  }
  Wake();
}

void ReleaseWatcher::ExpireAt(ContainerId container, Clock::time_point when) {
  {
    std::lock_guard lock(mu_);
    deadlines_[container] = when;
  }
  Wake();
}

void ReleaseWatcher::Forget(ContainerId container) {
  std::unique_lock lock(mu_);
  deadlines_.erase(container);
  if (std::this_thread::get_id() == thread_.get_id()) {
    // A callback: the thread is not polling now, so it may close them itself.
    std::erase_if(entries_, [&](const Entry& e) { return e.container == container; });
    return;
  }
  bool any = false;
  for (Entry& e : entries_) {
    if (e.container == container) {
      e.forgotten = true;
      any = true;
    }
  }
  if (!any) {
    return;
  }
  const uint64_t target = turns_ + 1;
  Wake();
  turned_.wait(lock, [&] { return stop_ || turns_ >= target; });
}

size_t ReleaseWatcher::watched() const {
  std::lock_guard lock(mu_);
  return entries_.size();
}

void ReleaseWatcher::Run() {
  std::vector<pollfd> polled;
  for (;;) {
    int timeout = -1;
    {
      std::lock_guard lock(mu_);
      if (stop_) {
        return;
      }
      // Only this thread closes entries, and never while it polls them, so
      // an fd number in `polled` cannot be reused under the poll.
      std::erase_if(entries_, [](const Entry& e) { return e.forgotten; });
      ++turns_;
      turned_.notify_all();
      polled.assign(1, pollfd{wake_.get(), POLLIN, 0});
      for (const Entry& e : entries_) {
        polled.push_back(pollfd{e.eventfd.get(), POLLIN, 0});
      }
      if (!deadlines_.empty()) {
        auto next = std::min_element(deadlines_.begin(), deadlines_.end(), [](auto& a, auto& b) {
                      return a.second < b.second;
                    })->second;
        auto ms = std::chrono::ceil<std::chrono::milliseconds>(next - Clock::now()).count();
        timeout = static_cast<int>(std::clamp<long long>(ms, 0, INT_MAX));
      }
    }
    if (::poll(polled.data(), polled.size(), timeout) < 0 && errno != EINTR) {
      spdlog::error("release watcher: poll: {}; release requests go unheard", std::strerror(errno));
      std::lock_guard lock(mu_);
      stop_ = true;
      turned_.notify_all();
      return;
    }
    Drain(wake_.get());
    std::vector<std::pair<ContainerId, std::string>> requested;
    std::vector<ContainerId> expired;
    {
      std::lock_guard lock(mu_);
      for (size_t i = 1; i < polled.size(); ++i) {
        if ((polled[i].revents & POLLIN) == 0) {
          continue;
        }
        auto e = std::find_if(entries_.begin(), entries_.end(),
                              [&](const Entry& x) { return x.eventfd.get() == polled[i].fd; });
        if (e != entries_.end() && Drain(e->eventfd.get()) && !e->forgotten) {
          requested.emplace_back(e->container, e->bdf);
        }
      }
      const auto now = Clock::now();
      for (auto it = deadlines_.begin(); it != deadlines_.end();) {
        if (it->second <= now) {
          expired.push_back(it->first);
          it = deadlines_.erase(it);
        } else {
          ++it;
        }
      }
    }
    for (const auto& [container, bdf] : requested) {
      callbacks_.requested(container, bdf);
    }
    for (ContainerId container : expired) {
      callbacks_.expired(container);
    }
  }
}

}  // namespace vfiod::service
