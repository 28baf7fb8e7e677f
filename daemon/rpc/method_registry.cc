#include "rpc/method_registry.h"

#include <algorithm>
#include <cerrno>

#include "proto/fd_passing.h"

namespace vfiod::rpc {

Result<UniqueFd> ReceivedFds::Take(std::size_t index) {
  std::lock_guard lock(mu_);
  if (index >= fds_.size() || !fds_[index].valid()) {
    return Fail(EBADF, "take fd", "message carries no fd " + std::to_string(index));
  }
  return std::move(fds_[index]);
}

std::size_t ReceivedFds::size() const {
  std::lock_guard lock(mu_);
  return fds_.size();
}

void ReceivedFds::CloseAllBut(const std::vector<std::size_t>& keep) {
  std::lock_guard lock(mu_);
  for (std::size_t i = 0; i < fds_.size(); ++i) {
    if (std::find(keep.begin(), keep.end(), i) == keep.end()) {
      fds_[i].reset();
    }
  }
}

bool CallContext::Notify(const std::string& method, const nlohmann::json& params) const {
  if (cancelled() || !conn_->notify) {
    return false;
  }
  return conn_->notify(wire::MakeRequest(method, params, std::nullopt));
}

Result<void> MethodRegistry::Register(const std::string& name, Handler handler,
                                      const MethodOptions& options) {
  if (name.empty() || !handler) {
    return Fail(EINVAL, "register method", "empty name or handler");
  }
  if (options.reply_fds > wire::kMaxFdsPerMessage) {
    return Fail(
        EINVAL, "register method",
        name + ": a reply carries at most " + std::to_string(wire::kMaxFdsPerMessage) + " fds");
  }
  if (!methods_.emplace(name, Method{std::move(handler), options}).second) {
    return Fail(EEXIST, "register method", name);
  }
  return Ok();
}

const MethodRegistry::Method* MethodRegistry::Find(const std::string& name) const {
  auto it = methods_.find(name);
  return it == methods_.end() ? nullptr : &it->second;
}

std::vector<std::string> MethodRegistry::Names() const {
  std::vector<std::string> names;
  names.reserve(methods_.size());
  for (const auto& [name, method] : methods_) {
    names.push_back(name);
  }
  return names;
}

}  // namespace vfiod::rpc
