#include "rpc/admission.h"

namespace vfiod::rpc {

std::optional<Refusal> Admission::Admit(uid_t uid) {
  const bool root = uid == 0;
  if (!root && of(uid) >= config_.max_connections_per_user) {
    return Refusal{"max_clients_per_user",
                   "uid " + std::to_string(uid) + " holds " + std::to_string(of(uid)) +
                       " connections, the most one user may (limits.max_clients_per_user)"};
  }
  std::size_t slots = config_.max_connections + (root ? config_.root_reserved_connections : 0);
  if (total_ >= slots) {
    return Refusal{"max_clients", std::to_string(total_) +
                                      " connections are open, the most the daemon serves" +
                                      (root ? " even for root" : "") + " (limits.max_clients)"};
  }
  ++total_;
  ++per_user_[uid];
  return std::nullopt;
}

void Admission::Release(uid_t uid) {
  auto it = per_user_.find(uid);
  if (it == per_user_.end()) {
    return;  // not counted: a bug elsewhere, but never underflow
  }
  --total_;
  if (--it->second == 0) {
    per_user_.erase(it);
  }
}

std::size_t Admission::of(uid_t uid) const {
  auto it = per_user_.find(uid);
  return it == per_user_.end() ? 0 : it->second;
}

}  // namespace vfiod::rpc
