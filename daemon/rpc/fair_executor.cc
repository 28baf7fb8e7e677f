#include "rpc/fair_executor.h"

#include <pthread.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <exception>
#include <optional>
#include <utility>

namespace vfiod::rpc {

FairExecutor::FairExecutor(std::size_t threads, std::size_t cap, std::string name)
    : cap_(cap == 0 ? DefaultCap(threads) : cap), queue_(cap_) {
  name.resize(std::min<std::size_t>(name.size(), 15));  // the kernel's limit
  const std::size_t count = threads == 0 ? 1 : threads;
  threads_.reserve(count);
  for (std::size_t i = 0; i < count; ++i) {
    threads_.emplace_back([this] { Work(); });
    ::pthread_setname_np(threads_.back().native_handle(), name.c_str());
  }
}

FairExecutor::~FairExecutor() { Join(); }

void FairExecutor::Post(Tenant tenant, Task task) {
  {
    std::lock_guard lock(mu_);
    if (stopping_ && threads_.empty()) {
      return;  // joined: nobody would run it (task is destroyed after the lock)
    }
    queue_.Push(tenant, std::move(task));
  }
  // At most one more task may start: one idle thread is enough. A task that
  // must wait for its tenant's cap is picked by the thread ending the tenant's
  // running task, which always looks again before it sleeps.
  wake_.notify_one();
}

void FairExecutor::Join() {
  std::vector<std::thread> threads;
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  wake_.notify_all();
  for (std::thread& t : threads_) {
    if (t.joinable()) {
      t.join();
    }
  }
  std::lock_guard lock(mu_);
  threads_.swap(threads);  // empty now: later Posts are dropped
}

void FairExecutor::Work() {
  std::unique_lock lock(mu_);
  for (;;) {
    std::optional<FairQueue::Picked> picked = queue_.Pop();
    if (!picked) {
      if (stopping_ && queue_.queued() == 0) {
        wake_.notify_all();  // the others may be waiting for a capped task that ran here
        return;
      }
      wake_.wait(lock);
      continue;
    }
    lock.unlock();
    try {
      picked->task();
    } catch (const std::exception& e) {
      spdlog::error("rpc: a blocking task threw: {}", e.what());
    } catch (...) {
      spdlog::error("rpc: a blocking task threw");
    }
    picked->task = nullptr;  // its captures go before the slot is given back
    lock.lock();
    queue_.Done(picked->tenant);
  }
}

}  // namespace vfiod::rpc
