// The service manager's notification protocol (sd_notify(3)), spoken directly:
// one datagram of "KEY=value" lines to the unix socket $NOTIFY_SOCKET names,
// with fds attached as SCM_RIGHTS when they go into the fd store. No
// libsystemd: the protocol is a socket, a sendmsg() and a few rules.
#pragma once

#include <span>
#include <string>
#include <string_view>

#include "proto/result.h"

namespace vfiod::lifecycle {

/// The most fds one notification carries: the kernel's SCM_MAX_FD, the most
/// one sendmsg() passes (more fail with EINVAL here, before any syscall).
inline constexpr std::size_t kMaxNotifyFds = 253;

/// The socket $NOTIFY_SOCKET names, or an empty string when it is unset (not
/// started by a service manager, or told to keep quiet).
[[nodiscard]] std::string NotifySocketFromEnv();

/// Sends `state` (newline-separated assignments: "READY=1", "STOPPING=1",
/// "STATUS=...", "FDSTORE=1\nFDNAME=c-5", "FDSTOREREMOVE=1\nFDNAME=c-5") as one
/// datagram to `socket_path`, with `fds` (borrowed, not closed) attached as
/// SCM_RIGHTS when non-empty. `socket_path` is a filesystem path ("/run/...")
/// or an abstract name written with a leading '@'. The manager learns the
/// sender's pid from the socket itself (SO_PASSCRED on its end).
/// Errors: EINVAL (empty state, a path that is empty, too long for
/// sockaddr_un or neither absolute nor '@', more than kMaxNotifyFds fds, an
/// FDNAME= line with an invalid name, fds given without FDSTORE=1), and those of
/// socket()/sendmsg(): ENOENT/ECONNREFUSED (nobody listens), EAGAIN (the
/// manager's queue is full), EBADF (a bad fd). EINTR is retried.
[[nodiscard]] Result<void> NotifyTo(std::string_view socket_path, std::string_view state,
                                    std::span<const int> fds = {});

/// NotifyTo($NOTIFY_SOCKET, ...). Returns false, sending nothing, when
/// $NOTIFY_SOCKET is unset (a daemon started by hand); true once sent.
/// Errors: NotifyTo's.
[[nodiscard]] Result<bool> NotifyWithFds(std::string_view state, std::span<const int> fds = {});

/// "FDSTORE=1\nFDNAME=<name>": puts `fds` into the store under `name`.
/// Errors: EINVAL (invalid name, no fds), then NotifyWithFds's.
[[nodiscard]] Result<bool> StoreFds(std::string_view name, std::span<const int> fds);

/// "FDSTOREREMOVE=1\nFDNAME=<name>": the store drops every fd under `name`.
/// Errors: EINVAL (invalid name), then NotifyWithFds's.
[[nodiscard]] Result<bool> RemoveFds(std::string_view name);

}  // namespace vfiod::lifecycle
