// Who is on the other end of a unix socket.
#pragma once

#include <sys/types.h>

#include <string_view>
#include <vector>

#include "proto/result.h"

namespace vfiod::rpc {

/// The peer's identity as of connect(): the policy decides on these.
struct PeerCredentials {
  uid_t uid = static_cast<uid_t>(-1);
  gid_t gid = static_cast<gid_t>(-1);
  pid_t pid = 0;
  std::vector<gid_t> groups;  ///< supplementary groups, sorted, without duplicates
};

/// Reads SO_PEERCRED of connected socket `sock`, and the supplementary groups:
/// SO_PEERGROUPS (taken at connect() time, so immune to pid reuse) when the
/// kernel has it, else the Groups: line of /proc/<pid>/status.
/// Errors: EBADF/ENOTSOCK (not a socket), ENOTCONN, ESRCH (no groups source:
/// the peer exited before /proc could be read).
[[nodiscard]] Result<PeerCredentials> ReadPeerCredentials(int sock);

/// The supplementary groups in /proc/<pid>/status. Errors: ESRCH/ENOENT (no
/// such process), EBADMSG (no parsable Groups: line).
[[nodiscard]] Result<std::vector<gid_t>> ReadProcGroups(pid_t pid);

/// Parses the text of a /proc/<pid>/status file for its "Groups:" line.
/// Errors: EBADMSG (line missing or holding something that is not a gid).
[[nodiscard]] Result<std::vector<gid_t>> ParseStatusGroups(std::string_view status);

}  // namespace vfiod::rpc
