#include "proto/fd_passing.h"

#include <sys/socket.h>
#include <sys/uio.h>

#include <cerrno>
#include <cstring>
#include <string>

namespace vfiod::wire {

namespace {

constexpr std::size_t kControlSpace = CMSG_SPACE(sizeof(int) * kMaxFdsPerMessage);

// Takes ownership of every fd in the SCM_RIGHTS headers of `msg` at once, so
// that no early return can leak one.
void AdoptFds(msghdr& msg, std::vector<UniqueFd>& out) {
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) {
      continue;
    }
    std::size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    const unsigned char* data = CMSG_DATA(c);
    for (std::size_t i = 0; i < count; ++i) {
      int fd = -1;
      std::memcpy(&fd, data + i * sizeof(int), sizeof(int));
      out.emplace_back(fd);
    }
  }
}

// sendmsg() with MSG_NOSIGNAL, retried on EINTR: the bytes accepted.
Result<std::size_t> SendMsg(int sock, const msghdr& msg) {
  ssize_t n = -1;
  do {
    n = ::sendmsg(sock, &msg, MSG_NOSIGNAL);
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    return ErrnoError("sendmsg");
  }
  return static_cast<std::size_t>(n);
}

}  // namespace

Result<Received> RecvWithFds(int sock, std::span<char> buf) {
  alignas(cmsghdr) unsigned char control[kControlSpace];
  iovec iov{buf.data(), buf.size()};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof(control);
  ssize_t n = -1;
  do {
    n = ::recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    return ErrnoError("recvmsg");
  }
  Received out;
  out.bytes = static_cast<std::size_t>(n);
  AdoptFds(msg, out.fds);
  out.fds_truncated = (msg.msg_flags & MSG_CTRUNC) != 0;
  return out;
}

Result<std::size_t> SendWithFds(int sock, std::span<const char> data, std::span<const int> fds) {
  if (fds.size() > kMaxFdsPerMessage) {
    return Fail(EINVAL, "sendmsg", "too many fds for one message");
  }
  if (data.empty() && !fds.empty()) {
    return Fail(EINVAL, "sendmsg", "fds need at least one byte to travel with");
  }
  alignas(cmsghdr) unsigned char control[kControlSpace] = {};
  iovec iov{const_cast<char*>(data.data()), data.size()};  // sendmsg does not write it
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  if (!fds.empty()) {
    msg.msg_control = control;
    msg.msg_controllen = CMSG_SPACE(sizeof(int) * fds.size());
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
    std::memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
  }
  return SendMsg(sock, msg);
}

Result<std::size_t> SendParts(int sock, std::span<const std::span<const char>> parts) {
  if (parts.empty() || parts.size() > kMaxSendParts) {
    return Fail(EINVAL, "sendmsg", "1 to " + std::to_string(kMaxSendParts) + " parts");
  }
  iovec iov[kMaxSendParts];
  for (std::size_t i = 0; i < parts.size(); ++i) {
    iov[i] = {const_cast<char*>(parts[i].data()), parts[i].size()};  // not written
  }
  msghdr msg{};
  msg.msg_iov = iov;
  msg.msg_iovlen = parts.size();
  return SendMsg(sock, msg);
}

}  // namespace vfiod::wire
