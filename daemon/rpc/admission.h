// Connection accounting: how many connections each uid holds, and whether a
// new one may be served (max_connections, the per-user share, root's reserve).
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <map>
#include <optional>
#include <string>

#include "rpc/server_config.h"

namespace vfiod::rpc {

/// Why a connection was refused.
struct Refusal {
  std::string limit;   ///< the config key that decided (limits.<limit>)
  std::string detail;  ///< for the client's error line and the log
};

/// Counts open connections per uid. Not thread-safe: one owner (the server's
/// strand). The rules, checked once the peer's credentials are known:
///  - a non-root uid may hold max_connections_per_user connections;
///  - everyone but root may use max_connections slots in all;
///  - uid 0 may also use root_reserved_connections slots beyond those, and
///    has no per-user share.
class Admission {
 public:
  explicit Admission(const ServerConfig& config) : config_(config) {}

  /// Counts a connection of `uid` and returns nullopt, or returns why it is
  /// refused (and counts nothing).
  [[nodiscard]] std::optional<Refusal> Admit(uid_t uid);
  /// Forgets one connection of `uid` that Admit counted.
  void Release(uid_t uid);

  [[nodiscard]] std::size_t total() const { return total_; }
  [[nodiscard]] std::size_t of(uid_t uid) const;

 private:
  ServerConfig config_;
  std::size_t total_ = 0;
  std::map<uid_t, std::size_t> per_user_;  // uids with at least one connection
};

}  // namespace vfiod::rpc
