#include "rpc/listen_socket.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace vfiod::rpc {

namespace {

Result<sockaddr_un> UnixAddress(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof(addr.sun_path)) {
    return Fail(ENAMETOOLONG, "socket path", path);
  }
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  return addr;
}

// Removes `path` if it is a socket nobody listens on any more.
Result<void> RemoveStaleSocket(const std::string& path, const sockaddr_un& addr) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) < 0) {
    return errno == ENOENT ? Ok() : ErrnoError("lstat " + path);
  }
  if (!S_ISSOCK(st.st_mode)) {
    return Fail(EEXIST, "bind " + path, "exists and is not a socket");
  }
  UniqueFd probe(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!probe) {
    return ErrnoError("socket");
  }
  if (::connect(probe.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) == 0) {
    return Fail(EADDRINUSE, "bind " + path, "another server is listening");
  }
  if (errno != ECONNREFUSED) {
    return ErrnoError("connect " + path);
  }
  if (::unlink(path.c_str()) < 0 && errno != ENOENT) {
    return ErrnoError("unlink " + path);
  }
  return Ok();
}

int SockOpt(int fd, int opt) {
  int value = -1;
  socklen_t len = sizeof(value);
  return ::getsockopt(fd, SOL_SOCKET, opt, &value, &len) == 0 ? value : -1;
}

}  // namespace

Result<UniqueFd> ListenUnix(const std::string& path, mode_t mode, std::optional<gid_t> group,
                            int backlog) {
  sockaddr_un addr = VFIOD_TRY(UnixAddress(path));
  VFIOD_TRY(RemoveStaleSocket(path, addr));
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd) {
    return ErrnoError("socket");
  }
  if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) < 0) {
    return ErrnoError("bind " + path);
  }
  // The socket file exists from bind() on; until chmod narrows it, umask
  // decides. A daemon should run with umask 077 so the window is closed.
  auto fail_bound = [&](const char* op) {
    auto err = ErrnoError(std::string(op) + " " + path);
    ::unlink(path.c_str());  // do not leave a file nobody will ever accept on
    return err;
  };
  if (::chmod(path.c_str(), mode) < 0) {
    return fail_bound("chmod");
  }
  if (group && ::chown(path.c_str(), static_cast<uid_t>(-1), *group) < 0) {
    return fail_bound("chown");
  }
  if (::listen(fd.get(), backlog) < 0) {
    return fail_bound("listen");
  }
  return fd;
}

Result<UniqueFd> AdoptListeningSocket(UniqueFd fd) {
  struct stat st {};
  if (::fstat(fd.get(), &st) < 0) {
    return ErrnoError("fstat inherited socket");
  }
  if (!S_ISSOCK(st.st_mode)) {
    return Fail(ENOTSOCK, "adopt listening socket");
  }
  if (SockOpt(fd.get(), SO_DOMAIN) != AF_UNIX) {
    return Fail(EAFNOSUPPORT, "adopt listening socket", "not AF_UNIX");
  }
  if (SockOpt(fd.get(), SO_TYPE) != SOCK_STREAM) {
    return Fail(EPROTOTYPE, "adopt listening socket", "not SOCK_STREAM");
  }
  if (SockOpt(fd.get(), SO_ACCEPTCONN) != 1) {
    return Fail(EINVAL, "adopt listening socket", "not listening");
  }
  int fd_flags = ::fcntl(fd.get(), F_GETFD);
  int fl_flags = ::fcntl(fd.get(), F_GETFL);
  if (fd_flags < 0 || fl_flags < 0 || ::fcntl(fd.get(), F_SETFD, fd_flags | FD_CLOEXEC) < 0 ||
      ::fcntl(fd.get(), F_SETFL, fl_flags | O_NONBLOCK) < 0) {
    return ErrnoError("fcntl inherited socket");
  }
  return fd;
}

Result<UniqueFd> AcceptConnection(int listen_fd) {
  int fd = -1;
  do {
    fd = ::accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) {
    return ErrnoError("accept4");
  }
  return UniqueFd(fd);
}

}  // namespace vfiod::rpc
