// Passing file descriptors over a unix stream socket with SCM_RIGHTS.
//
// Wire rule: the fds a message carries are sent in the same sendmsg() as the
// first byte of that message's line, and that sendmsg() carries bytes of no
// other message. The kernel never merges such a chunk with data queued after
// it, and a recvmsg() stops right after the chunk that brought fds, so the
// receiver attaches the fds of one recvmsg() to the last line that started in
// the bytes it returned (see framing.h).
#pragma once

#include <cstddef>
#include <span>
#include <vector>

#include "proto/result.h"
#include "proto/unique_fd.h"

namespace vfiod::wire {

/// The most fds one message may carry. More than this arrive truncated
/// (MSG_CTRUNC) and fail the message with kFdError.
inline constexpr std::size_t kMaxFdsPerMessage = 16;

/// What one recvmsg() returned.
struct Received {
  std::size_t bytes = 0;       ///< 0 means the peer closed its end
  std::vector<UniqueFd> fds;   ///< owned at once, opened O_CLOEXEC
  bool fds_truncated = false;  ///< MSG_CTRUNC: the peer sent more fds than fit
};

/// recvmsg() on `sock` into `buf` with room for kMaxFdsPerMessage fds, using
/// MSG_CMSG_CLOEXEC. On MSG_CTRUNC the fds that did arrive are still returned
/// (as owners, so the caller closes them) with fds_truncated set.
/// Errors: EAGAIN (non-blocking socket, nothing to read), ECONNRESET, EBADF,
/// ENOTSOCK, EINTR is retried.
[[nodiscard]] Result<Received> RecvWithFds(int sock, std::span<char> buf);

/// sendmsg() of `data` on `sock` with MSG_NOSIGNAL, carrying `fds` (borrowed,
/// not closed) as SCM_RIGHTS when non-empty. Returns the bytes accepted, which
/// may be fewer than data.size(); when it is > 0 the fds went with them.
/// Errors: EINVAL (data empty while fds given, or more than kMaxFdsPerMessage
/// fds), EAGAIN (non-blocking, buffer full), EPIPE, ECONNRESET; EINTR retried.
[[nodiscard]] Result<std::size_t> SendWithFds(int sock, std::span<const char> data,
                                              std::span<const int> fds);

/// One sendmsg() of the concatenation of `parts` on `sock` with MSG_NOSIGNAL,
/// carrying no fds (several lines in one syscall). Returns the bytes
/// accepted, which may end inside any part. At most kMaxSendParts parts.
/// Errors: EINVAL (no parts, or too many), EAGAIN, EPIPE, ECONNRESET; EINTR retried.
inline constexpr std::size_t kMaxSendParts = 64;
[[nodiscard]] Result<std::size_t> SendParts(int sock, std::span<const std::span<const char>> parts);

}  // namespace vfiod::wire
