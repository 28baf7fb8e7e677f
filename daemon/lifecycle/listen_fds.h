// The fds a service manager passes on start (sd_listen_fds(3)): fds 3, 4, ...
// described by LISTEN_PID, LISTEN_FDS and LISTEN_FDNAMES. Both socket
// activation (the listening socket) and the fd store (what vfiod stored before
// it restarted) arrive this way.
#pragma once

#include <string>
#include <vector>

#include "proto/result.h"
#include "proto/unique_fd.h"

namespace vfiod::lifecycle {

/// The first fd a service manager passes.
inline constexpr int kListenFdsStart = 3;
/// More passed fds than this are refused as malformed (far above any store).
inline constexpr int kMaxListenFds = 1 << 20;

/// One passed fd and the name it was stored or declared under ("unknown"
/// when the manager gave no names, as systemd does).
struct NamedFd {
  std::string name;
  UniqueFd fd;
};

/// Takes the fds passed to this process: reads LISTEN_PID, LISTEN_FDS and
/// LISTEN_FDNAMES, owns fds 3 .. 3+LISTEN_FDS-1 (each gets FD_CLOEXEC, so no
/// child inherits them), and unsets the three variables (they describe this
/// process only). Returns them in fd order, with their names.
/// No LISTEN_PID, or one naming another process (inherited from a parent):
/// nothing was passed to us, an empty list, no fd touched.
/// Errors (the variables are unset in every case):
///  EINVAL: LISTEN_PID or LISTEN_FDS is not a decimal number, LISTEN_FDS is
///    missing, negative or above kMaxListenFds (then no fd is touched: how
///    many were passed is unknown); LISTEN_FDNAMES names a different number
///    of fds, or an invalid name (see IsValidFdName); then the passed fds are
///    closed, since nothing could account for them.
///  EBADF: one of the announced fds is not open; the others are closed.
[[nodiscard]] Result<std::vector<NamedFd>> ListenFds();

}  // namespace vfiod::lifecycle
