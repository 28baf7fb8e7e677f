#include "rpc/raw_pingpong.h"

#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <string>

#include "common/stats.h"
#include "proto/unique_fd.h"

namespace vfiod::bench {
namespace {

// What the client library sends for a ping and what vfiod answers.
constexpr char kRequest[] = "{\"id\":1,\"jsonrpc\":\"2.0\",\"method\":\"ping\"}\n";
constexpr char kReply[] = "{\"id\":1,\"jsonrpc\":\"2.0\",\"result\":{}}\n";

// Reads until a '\n' ends the buffer. False on EOF or error.
bool ReadLine(int fd, char* buf, size_t cap) {
  size_t got = 0;
  while (got == 0 || buf[got - 1] != '\n') {
    const ssize_t n = ::read(fd, buf + got, cap - got);
    if (n <= 0) {
      return false;
    }
    got += static_cast<size_t>(n);
  }
  return true;
}

bool WriteAll(int fd, const char* text, size_t len) {
  while (len > 0) {
    const ssize_t n = ::write(fd, text, len);
    if (n <= 0) {
      return false;
    }
    text += n;
    len -= static_cast<size_t>(n);
  }
  return true;
}

[[noreturn]] void Echo(int fd) {
  char buf[256];
  while (ReadLine(fd, buf, sizeof buf)) {
    if (!WriteAll(fd, kReply, sizeof kReply - 1)) {
      break;
    }
  }
  ::_exit(0);
}

}  // namespace

Result<std::vector<double>> RawPingPong(int count) {
  int pair[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) != 0) {
    return ErrnoError("socketpair");
  }
  UniqueFd mine(pair[0]);
  UniqueFd theirs(pair[1]);
  const pid_t pid = ::fork();
  if (pid < 0) {
    return ErrnoError("fork");
  }
  if (pid == 0) {
    mine.reset();
    Echo(theirs.get());
  }
  theirs.reset();
  std::vector<double> samples;
  samples.reserve(static_cast<size_t>(count));
  char buf[256];
  bool broken = false;
  for (int i = 0; i < count; ++i) {
    const Clock::time_point start = Clock::now();
    if (!WriteAll(mine.get(), kRequest, sizeof kRequest - 1) ||
        !ReadLine(mine.get(), buf, sizeof buf)) {
      broken = true;
      break;
    }
    samples.push_back(SecondsSince(start));
  }
  mine.reset();  // EOF: the echo process exits
  ::waitpid(pid, nullptr, 0);
  if (broken) {
    return Fail(EPIPE, "raw ping-pong", "the echo process went away");
  }
  return samples;
}

}  // namespace vfiod::bench
