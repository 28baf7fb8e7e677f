// Reset between owners (issue 16, item 2): a device is reset before its fd
// goes to a user other than those who had it since its last reset, so no
// state one tenant left in it (registers, queues, device memory) reaches the
// next. device.open is the hand-over: it is the only way a client gets at a
// device's registers; a container alone gives an IOMMU domain, not the device.
#include <spdlog/fmt/fmt.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cerrno>
#include <string>

#include "journal/sink.h"
#include "service/managed_container.h"
#include "service/service.h"

namespace vfiod::service {
namespace {

std::string UidList(const std::set<uid_t>& users) {
  std::string out;
  for (uid_t u : users) {
    out += (out.empty() ? "" : ", ") + std::to_string(u);
  }
  return out;
}

HandOverReset Done(ResetMethod method) {
  return method == ResetMethod::kFunction ? HandOverReset::kFunction : HandOverReset::kHot;
}

}  // namespace

SResult<HandOverReset> Service::ResetForHandOver(ManagedContainer& managed, const std::string& bdf,
                                                 uid_t uid, uid_t owner) {
  if (!config_.reset.between_owners) {
    return HandOverReset::kDisabled;
  }
  std::optional<std::set<uid_t>> users;
  {
    std::lock_guard lock(mu_);
    if (auto it = device_users_.find(bdf); it != device_users_.end()) {
      users = it->second;
    }
  }
  if (!users && managed.adopted()) {
    users = std::set<uid_t>{owner};  // its users before the restart: the owner's tenancy
  }
  const bool others =
      !users || std::any_of(users->begin(), users->end(), [&](uid_t u) { return u != uid; });
  if (uid == 0 || !others) {
    return HandOverReset::kNotNeeded;  // root may read any device's state anyway
  }
  Result<ResetMethod> reset = managed.ResetDevice(bdf);
  if (reset) {
    std::lock_guard lock(mu_);
    device_users_[bdf].clear();  // nobody's state is in it now
    journal::Emit(
        {.kind = journal::Kind::kDeviceReset,
         .message = fmt::format("{} reset ({}) before uid {} gets it", bdf,
                                *reset == ResetMethod::kFunction ? "function" : "hot", uid),
         .uid = uid,
         .container = managed.id(),
         .bdfs = {bdf}});
    return Done(*reset);
  }
  const int code = reset.error().code;
  if (code != ENOTTY && code != EPERM) {
    return std::unexpected(ServiceError(reset.error()));
  }
  if (!users || config_.reset.without_reset == WithoutReset::kHandOver) {
    journal::Emit({.kind = journal::Kind::kDeviceNotReset,
                   .message = fmt::format("{} goes to uid {} without a reset (previous users: "
                                          "{}): {}",
                                          bdf, uid, users ? UidList(*users) : "unknown",
                                          reset.error().message()),
                   .uid = uid,
                   .container = managed.id(),
                   .bdfs = {bdf},
                   .error_number = code});
    return HandOverReset::kUnavailable;
  }
  return Refuse(ErrorKind::kPermission, code, "device.open",
                bdf + " was used by uid " + UidList(*users) +
                    " since its last reset and cannot be reset now (" + reset.error().detail +
                    "); vfiod hands a device to another user only after a reset "
                    "(config reset.without_reset is \"refuse\")");
}

void Service::NoteHandOver(const std::string& bdf, uid_t uid) {
  std::lock_guard lock(mu_);
  device_users_[bdf].insert(uid);
}

void Service::ResetOnDestroy(ManagedContainer& managed) {
  for (const std::string& bdf : managed.OpenDevices()) {
    {
      std::lock_guard lock(mu_);
      auto it = device_users_.find(bdf);
      if (it == device_users_.end() || it->second.empty()) {
        continue;  // never handed out, or reset since
      }
    }
    Result<ResetMethod> reset = managed.ResetDevice(bdf);
    if (reset) {
      journal::Emit({.kind = journal::Kind::kDeviceReset,
                     .message = fmt::format("{} reset ({}) as container {} is destroyed", bdf,
                                            *reset == ResetMethod::kFunction ? "function" : "hot",
                                            managed.id()),
                     .container = managed.id(),
                     .bdfs = {bdf}});
    } else {
      journal::Emit({.kind = journal::Kind::kDeviceNotReset,
                     .message = fmt::format("{}: no reset as container {} is destroyed: {}", bdf,
                                            managed.id(), reset.error().message()),
                     .container = managed.id(),
                     .bdfs = {bdf},
                     .error_number = reset.error().code});
    }
  }
}

}  // namespace vfiod::service
