// A client of the daemon in a child process, to be killed mid-work: what a
// crashing user-space driver looks like to vfiod. Used by the tests that check
// a killed client leaves nothing behind.
#pragma once

#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <functional>
#include <string>
#include <thread>

#include "client/vfiod_client.h"
#include "proto/jsonrpc.h"

namespace vfiod::itest {

class ForkedClient {
 public:
  /// Sends one byte to the parent (read with Next()).
  using Signal = std::function<void(char)>;
  /// Runs in the child on its own connection; a nonzero return ends the
  /// child with that code at once, zero leaves it waiting to be killed.
  using Body = std::function<int(client::Client&, const Signal&)>;

  /// Forks a child that connects to `socket` (exit code 1 if it cannot) and
  /// runs `body`, as `uid` (its own group too) when given. The parent
  /// continues at once.
  ForkedClient(const std::string& socket, const Body& body, int uid = -1) {
    int pipe_fds[2] = {-1, -1};
    if (::pipe2(pipe_fds, O_CLOEXEC) != 0) {
      return;
    }
    pid_ = ::fork();
    if (pid_ == 0) {
      ::close(pipe_fds[0]);
      if (uid >= 0 && (::setgroups(0, nullptr) != 0 || ::setresgid(uid, uid, uid) != 0 ||
                       ::setresuid(uid, uid, uid) != 0)) {
        ::_exit(1);
      }
      auto c = client::Client::Connect(socket);
      if (!c) {
        ::_exit(1);
      }
      const int out = pipe_fds[1];
      const int code = body(*c, [out](char byte) { (void)!::write(out, &byte, 1); });
      if (code != 0) {
        ::_exit(code);
      }
      for (;;) {
        ::pause();
      }
    }
    ::close(pipe_fds[1]);
    ready_ = pipe_fds[0];
  }
  ForkedClient(const ForkedClient&) = delete;
  ForkedClient& operator=(const ForkedClient&) = delete;
  ~ForkedClient() {
    Kill();
    if (ready_ >= 0) {
      ::close(ready_);
    }
  }

  /// True when the fork happened.
  [[nodiscard]] bool started() const { return pid_ > 0 && ready_ >= 0; }
  /// The next byte the child signalled; 0 once the child is gone without one.
  [[nodiscard]] char Next() const {
    char byte = 0;
    return ready_ >= 0 && ::read(ready_, &byte, 1) == 1 ? byte : 0;
  }
  /// SIGKILLs and reaps the child. Idempotent.
  void Kill() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
      pid_ = -1;
    }
  }

 private:
  pid_t pid_ = -1;
  int ready_ = -1;
};

/// Polls `status` (every 10 ms, for at most `limit`) until `settled` accepts a
/// reading; returns the last reading either way, for the caller's EXPECTs.
inline nlohmann::json AwaitStatus(const std::function<nlohmann::json()>& status,
                                  const std::function<bool(const nlohmann::json&)>& settled,
                                  std::chrono::milliseconds limit = std::chrono::seconds(20)) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  nlohmann::json reading = status();
  while (!settled(reading) && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    reading = status();
  }
  return reading;
}

}  // namespace vfiod::itest
