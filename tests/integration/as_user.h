// Running part of a test as another uid: a forked child drops to `uid` with
// setresgid/setresuid (the test runs as root) and reports back through a pipe.
#pragma once

#include <fcntl.h>
#include <grp.h>
#include <sys/wait.h>
#include <unistd.h>

#include <functional>
#include <string>

namespace vfiod::itest {

/// Runs `body` in a child process as `uid`/`gid`. `body` returns "" on success
/// or a description of what went wrong; that string is returned here (or a
/// note when the child could not drop privileges or died).
inline std::string RunAs(uid_t uid, gid_t gid, const std::function<std::string()>& body) {
  int p[2];
  if (::pipe2(p, O_CLOEXEC) != 0) {
    return "pipe failed";
  }
  pid_t pid = ::fork();
  if (pid == 0) {
    ::close(p[0]);
    std::string out;
    if (::setgroups(0, nullptr) != 0 || ::setresgid(gid, gid, gid) != 0 ||
        ::setresuid(uid, uid, uid) != 0) {
      out = "cannot drop to uid " + std::to_string(uid);
    } else {
      out = body();
    }
    out = "#" + out;  // "#" marks a complete report
    (void)!::write(p[1], out.data(), out.size());
    ::_exit(0);
  }
  ::close(p[1]);
  std::string got;
  char buf[4096];
  for (ssize_t n; (n = ::read(p[0], buf, sizeof buf)) > 0;) {
    got.append(buf, static_cast<size_t>(n));
  }
  ::close(p[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  if (got.empty() || got[0] != '#') {
    return "the child died without reporting (status " + std::to_string(status) + ")";
  }
  return got.substr(1);
}

}  // namespace vfiod::itest
