// Creating or adopting the daemon's listening unix socket.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>

#include "proto/result.h"
#include "proto/unique_fd.h"

namespace vfiod::rpc {

/// Binds a SOCK_STREAM unix socket at `path` (CLOEXEC, non-blocking), sets the
/// file's mode and, if given, its group, then listens. A stale socket file
/// (nobody accepts on it) is replaced; a live one is EADDRINUSE.
/// Errors: ENAMETOOLONG (path longer than sun_path), EADDRINUSE, EEXIST (path is
/// not a socket), EACCES/EPERM (chmod/chown), and socket/bind/listen errnos.
[[nodiscard]] Result<UniqueFd> ListenUnix(const std::string& path, mode_t mode,
                                          std::optional<gid_t> group, int backlog = 128);

/// Takes over an inherited listening socket (socket activation). Checks that it
/// is an AF_UNIX SOCK_STREAM socket in listening state, and makes it CLOEXEC and
/// non-blocking. Errors: ENOTSOCK, EAFNOSUPPORT (not AF_UNIX), EPROTOTYPE (not
/// a stream socket), EINVAL (not listening), EBADF.
[[nodiscard]] Result<UniqueFd> AdoptListeningSocket(UniqueFd fd);

/// accept4() with SOCK_CLOEXEC | SOCK_NONBLOCK. Errors: EAGAIN (none pending),
/// EMFILE/ENFILE, ECONNABORTED; EINTR is retried.
[[nodiscard]] Result<UniqueFd> AcceptConnection(int listen_fd);

}  // namespace vfiod::rpc
