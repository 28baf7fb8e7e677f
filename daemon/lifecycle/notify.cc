#include "lifecycle/notify.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "lifecycle/fd_name.h"
#include "proto/unique_fd.h"

namespace vfiod::lifecycle {

namespace {

/// `path` as a sockaddr_un and its length: '@' becomes the abstract
/// namespace's leading NUL. EINVAL when it does not fit or is not a path.
Result<socklen_t> MakeAddress(std::string_view path, sockaddr_un& addr) {
  addr = {};
  addr.sun_family = AF_UNIX;
  if (path.size() < 2 || (path[0] != '/' && path[0] != '@')) {
    return Fail(EINVAL, "notify", "NOTIFY_SOCKET must be an absolute path or an @abstract name");
  }
  if (path.size() > sizeof(addr.sun_path) - (path[0] == '/' ? 1 : 0)) {
    return Fail(EINVAL, "notify", "NOTIFY_SOCKET is longer than a unix socket address");
  }
  std::memcpy(addr.sun_path, path.data(), path.size());
  if (path[0] == '@') {
    addr.sun_path[0] = '\0';  // abstract: no terminating NUL, length says where it ends
    return static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path.size());
  }
  return static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path.size() + 1);
}

/// The lines of `state` that need checking before they reach the manager:
/// every FDNAME= must be valid, and fds go only with FDSTORE=1.
Result<void> CheckState(std::string_view state, bool has_fds) {
  if (state.empty()) {
    return Fail(EINVAL, "notify", "empty state");
  }
  bool fdstore = false;
  size_t start = 0;
  while (start <= state.size()) {
    size_t end = state.find('\n', start);
    std::string_view line =
        state.substr(start, end == std::string_view::npos ? std::string_view::npos : end - start);
    if (line.starts_with("FDNAME=") && !IsValidFdName(line.substr(7))) {
      return Fail(EINVAL, "notify", "invalid FDNAME (1-255 printable ASCII, no ':')");
    }
    fdstore = fdstore || line == "FDSTORE=1";
    if (end == std::string_view::npos) {
      break;
    }
    start = end + 1;
  }
  if (has_fds && !fdstore) {
    return Fail(EINVAL, "notify", "fds are sent only with FDSTORE=1");
  }
  return Ok();
}

Result<void> SendDatagram(int sock, const sockaddr_un& addr, socklen_t addr_len,
                          std::string_view state, std::span<const int> fds) {
  iovec iov{const_cast<char*>(state.data()), state.size()};
  msghdr msg{};
  msg.msg_name = const_cast<sockaddr_un*>(&addr);
  msg.msg_namelen = addr_len;
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  std::vector<unsigned char> control;
  if (!fds.empty()) {
    control.resize(CMSG_SPACE(sizeof(int) * fds.size()));
    msg.msg_control = control.data();
    msg.msg_controllen = control.size();
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    if (c == nullptr) {  // cannot happen: the buffer was sized for it
      return Fail(EINVAL, "notify", "no room for SCM_RIGHTS");
    }
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
    std::memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
  }
  ssize_t n = -1;
  do {
    n = ::sendmsg(sock, &msg, MSG_NOSIGNAL);
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    return ErrnoError("sendmsg NOTIFY_SOCKET");
  }
  if (static_cast<size_t>(n) != state.size()) {
    return Fail(EMSGSIZE, "sendmsg NOTIFY_SOCKET", "datagram truncated");
  }
  return Ok();
}

}  // namespace

std::string NotifySocketFromEnv() {
  const char* value = std::getenv("NOTIFY_SOCKET");
  return value != nullptr ? std::string(value) : std::string();
}

Result<void> NotifyTo(std::string_view socket_path, std::string_view state,
                      std::span<const int> fds) {
  if (fds.size() > kMaxNotifyFds) {
    return Fail(EINVAL, "notify", "more fds than one message carries");
  }
  VFIOD_TRY(CheckState(state, !fds.empty()));
  sockaddr_un addr{};
  socklen_t addr_len = VFIOD_TRY(MakeAddress(socket_path, addr));
  UniqueFd sock(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!sock) {
    return ErrnoError("socket AF_UNIX SOCK_DGRAM");
  }
  return SendDatagram(sock.get(), addr, addr_len, state, fds);
}

Result<bool> NotifyWithFds(std::string_view state, std::span<const int> fds) {
  std::string path = NotifySocketFromEnv();
  if (path.empty()) {
    return false;
  }
  VFIOD_TRY(NotifyTo(path, state, fds));
  return true;
}

Result<bool> StoreFds(std::string_view name, std::span<const int> fds) {
  if (!IsValidFdName(name) || fds.empty()) {
    return Fail(EINVAL, "fd store", "an fd store entry needs a valid name and at least one fd");
  }
  return NotifyWithFds("FDSTORE=1\nFDNAME=" + std::string(name), fds);
}

Result<bool> RemoveFds(std::string_view name) {
  if (!IsValidFdName(name)) {
    return Fail(EINVAL, "fd store", "invalid FDNAME (1-255 printable ASCII, no ':')");
  }
  return NotifyWithFds("FDSTOREREMOVE=1\nFDNAME=" + std::string(name));
}

}  // namespace vfiod::lifecycle
