// The order in which blocking work runs when several users want the workers:
// one FIFO queue per tenant (the uid a connection's peer credentials name),
// round robin across the tenants, and a cap on how many tasks of one tenant
// may run at once. Pure state: no threads, no locks, no clock. FairExecutor
// owns one under its mutex; the unit tests drive it step by step.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <deque>
#include <functional>
#include <list>
#include <optional>
#include <unordered_map>

namespace vfiod::rpc {

/// One tenant's claim on the workers.
using Tenant = uid_t;
/// A unit of blocking work (a handler call, a close hook).
using Task = std::move_only_function<void()>;

/// The contract:
///  - A tenant's tasks start in the order they were pushed.
///  - Tenants take turns: Pop serves the first tenant of the rotation that
///    has a task queued and fewer than `cap` running, and sends that tenant
///    to the end of the rotation. A tenant that joins goes to the end too, so
///    it waits for at most one task of each tenant ahead of it, however many
///    tasks those tenants have queued.
///  - No tenant ever has more than `cap` tasks running. With `cap` below the
///    number of workers, one tenant cannot occupy them all: some worker stays
///    free for the others (see FairExecutor::DefaultCap).
class FairQueue {
 public:
  /// A task handed out by Pop: run it, then call Done(tenant).
  struct Picked {
    Tenant tenant = 0;
    Task task;
  };

  /// `cap`: the most tasks of one tenant running at once (0 counts as 1).
  explicit FairQueue(std::size_t cap) : cap_(cap == 0 ? 1 : cap) {}

  /// Queues `task` behind the tenant's earlier tasks.
  void Push(Tenant tenant, Task task);
  /// The next task allowed to start, now counted as running; nullopt when
  /// nothing is queued or every tenant with queued work is at its cap.
  [[nodiscard]] std::optional<Picked> Pop();
  /// A task of `tenant` returned by Pop has finished.
  void Done(Tenant tenant);

  /// Tasks waiting to start, over all tenants.
  [[nodiscard]] std::size_t queued() const { return queued_; }
  /// Tasks of `tenant` between Pop and Done.
  [[nodiscard]] std::size_t running(Tenant tenant) const;
  [[nodiscard]] std::size_t cap() const { return cap_; }

 private:
  struct Lane {
    std::deque<Task> waiting;
    std::size_t running = 0;
  };
  /// Forgets `tenant`'s lane once it has nothing queued or running.
  void DropIfIdle(std::unordered_map<Tenant, Lane>::iterator lane);

  const std::size_t cap_;
  std::unordered_map<Tenant, Lane> lanes_;  // tenants with work queued or running
  std::list<Tenant> rotation_;              // tenants with work queued, next turn first
  std::size_t queued_ = 0;
};

}  // namespace vfiod::rpc
