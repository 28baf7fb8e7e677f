// The fd store's budget (fd_budget.h): what each object is charged, and the
// cap, limits.max_stored_fds, fitted to what the service manager keeps.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cerrno>

#include "lifecycle/record_store.h"
#include "service/service.h"

namespace vfiod::service {

void Service::SetFdStoreHooks(FdStoreHooks hooks) {
  fd_store_ = std::move(hooks);
  if (!fd_store_.store) {
    return;
  }
  const uint64_t records = std::size(lifecycle::kRecordFdNames);
  uint64_t max = config_.limits.max_stored_fds;
  if (fd_store_.capacity != 0) {
    max = std::min(max, fd_store_.capacity - std::min(fd_store_.capacity, records));
  }
  fd_budget_.SetMax(max);
  spdlog::info(
      "fd store: {} fds for containers, mappings and regions (limits.max_stored_fds {}; the "
      "service manager keeps {}), and the state records",
      max, config_.limits.max_stored_fds,
      fd_store_.capacity != 0 ? std::to_string(fd_store_.capacity)
                              : std::string("an unknown number"));
}

SResult<FdBudget::Ticket> Service::ChargeStoredFds(const Caller& caller, uint64_t fds,
                                                   const char* op) {
  if (!has_fd_store()) {
    return FdBudget::Ticket();
  }
  const uid_t uid = caller.identity.uid;
  auto ticket = fd_budget_.Charge(uid, fds);
  if (ticket) {
    return std::move(*ticket);
  }
  const std::string asked = std::to_string(fds) + " asked";
  const char* why = " (what vfiod holds must fit the store to survive a restart)";
  if (ticket.error() == FdBudget::Refusal::kUser) {
    return Refuse(ErrorKind::kQuota, EDQUOT, op,
                  "limits.max_stored_fds_per_user: " + std::to_string(fd_budget_.charged(uid)) +
                      " fds of the service manager's fd store charged to uid " +
                      std::to_string(uid) + " + " + asked + " > " +
                      std::to_string(fd_budget_.max_per_user()) + why);
  }
  // Other users' figures are not a non-root caller's business.
  return Refuse(ErrorKind::kQuota, EDQUOT, op,
                caller.is_root()
                    ? "limits.max_stored_fds: " + std::to_string(fd_budget_.charged()) +
                          " fds of the service manager's fd store charged for all clients + " +
                          asked + " > " + std::to_string(fd_budget_.max()) + why
                    : "limits.max_stored_fds: the service manager's fd store is full for "
                      "clients other than root (" +
                          asked + "; the last " + std::to_string(fd_budget_.root_reserve()) +
                          " of " + std::to_string(fd_budget_.max()) + " are root's)" + why);
}

uint64_t Service::ContainerStoredFds(uint64_t groups, uint64_t members) const {
  return has_fd_store() ? 2 + groups + members : 0;
}

}  // namespace vfiod::service
