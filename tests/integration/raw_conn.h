// A raw connection to the daemon's socket for the limits tests: writes bytes
// as they are (batches, NUL bytes, half lines) and reads reply lines, and a
// child process that holds connections as another uid.
#pragma once

#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "proto/unique_fd.h"

namespace vfiod::itest {

class RawConn {
 public:
  explicit RawConn(const std::string& path) {
    fd_.reset(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
    if (::connect(fd_.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
      fd_.reset();
    }
  }
  [[nodiscard]] bool ok() const { return fd_.valid(); }
  [[nodiscard]] int fd() const { return fd_.get(); }

  /// Writes all of `bytes` (blocking); false when the peer is gone.
  bool Write(const std::string& bytes) {
    for (std::size_t done = 0; done < bytes.size();) {
      ssize_t n = ::send(fd_.get(), bytes.data() + done, bytes.size() - done, MSG_NOSIGNAL);
      if (n <= 0) {
        return false;
      }
      done += static_cast<std::size_t>(n);
    }
    return true;
  }
  /// Writes as much of `bytes` as the socket takes within `patience`; returns
  /// the bytes written.
  std::size_t WriteSome(const std::string& bytes, std::chrono::milliseconds patience) {
    std::size_t done = 0;
    while (done < bytes.size()) {
      pollfd p{fd_.get(), POLLOUT, 0};
      if (::poll(&p, 1, static_cast<int>(patience.count())) != 1 || (p.revents & POLLOUT) == 0) {
        break;
      }
      ssize_t n =
          ::send(fd_.get(), bytes.data() + done, bytes.size() - done, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n <= 0) {
        break;
      }
      done += static_cast<std::size_t>(n);
    }
    return done;
  }
  /// The next line without its '\n', or "<timeout>" / "<eof>".
  std::string ReadLine(std::chrono::milliseconds timeout = std::chrono::seconds(20)) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      if (auto nl = buf_.find('\n'); nl != std::string::npos) {
        std::string line = buf_.substr(0, nl);
        buf_.erase(0, nl + 1);
        return line;
      }
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      pollfd p{fd_.get(), POLLIN, 0};
      if (left.count() <= 0 || ::poll(&p, 1, static_cast<int>(left.count())) != 1) {
        return "<timeout>";
      }
      char chunk[65536];
      ssize_t n = ::recv(fd_.get(), chunk, sizeof chunk, 0);
      if (n <= 0) {
        return "<eof>";
      }
      buf_.append(chunk, static_cast<std::size_t>(n));
    }
  }
  /// The next line parsed (a JSON string "<timeout>"/"<eof>"/"<bad>" otherwise).
  nlohmann::json ReadJson(std::chrono::milliseconds timeout = std::chrono::seconds(20)) {
    std::string line = ReadLine(timeout);
    if (line == "<timeout>" || line == "<eof>") {
      return line;
    }
    nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
    return j.is_discarded() ? nlohmann::json("<bad>") : j;
  }

 private:
  UniqueFd fd_;
  std::string buf_;
};

/// A child process, dropped to `uid`, that opens `count` connections, sends a
/// ping on each and reads the first line, then holds them until killed.
/// Reports {"accepted": n, "refused": n, "limits": [...]} (the limits named
/// by the refusals, deduplicated).
class HeldConnections {
 public:
  HeldConnections(const std::string& socket, uid_t uid, int count) {
    int p[2];
    if (::pipe2(p, O_CLOEXEC) != 0) {
      return;
    }
    pid_ = ::fork();
    if (pid_ == 0) {
      ::close(p[0]);
      std::string out = Hold(socket, uid, count);
      (void)!::write(p[1], out.data(), out.size());
      ::close(p[1]);
      for (;;) {
        ::pause();
      }
    }
    ::close(p[1]);
    std::string got;
    char buf[4096];
    for (ssize_t n;
         got.find('\n') == std::string::npos && (n = ::read(p[0], buf, sizeof buf)) > 0;) {
      got.append(buf, static_cast<std::size_t>(n));
    }
    ::close(p[0]);
    report_ = nlohmann::json::parse(got, nullptr, false);
  }
  ~HeldConnections() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }
  HeldConnections(const HeldConnections&) = delete;
  HeldConnections& operator=(const HeldConnections&) = delete;
  [[nodiscard]] const nlohmann::json& report() const { return report_; }

 private:
  static std::string Hold(const std::string& socket, uid_t uid, int count) {
    if (::setgroups(0, nullptr) != 0 || ::setresgid(uid, uid, uid) != 0 ||
        ::setresuid(uid, uid, uid) != 0) {
      return "{\"error\":\"cannot drop privileges\"}\n";
    }
    static std::vector<RawConn> held;  // the child's; lives until it is killed
    held.reserve(static_cast<std::size_t>(count));
    int accepted = 0;
    int refused = 0;
    nlohmann::json limits = nlohmann::json::array();
    for (int i = 0; i < count; ++i) {
      held.emplace_back(socket);
      RawConn& c = held.back();
      c.Write(R"({"jsonrpc":"2.0","id":1,"method":"ping"})"
              "\n");
      nlohmann::json reply = c.ReadJson();
      if (reply.is_object() && reply.contains("result")) {
        ++accepted;
      } else {
        ++refused;
        nlohmann::json limit = reply.is_object() ? reply["error"]["data"]["limit"] : reply;
        if (std::find(limits.begin(), limits.end(), limit) == limits.end()) {
          limits.push_back(limit);
        }
      }
    }
    return nlohmann::json{{"accepted", accepted}, {"refused", refused}, {"limits", limits}}.dump() +
           "\n";
  }

  pid_t pid_ = -1;
  nlohmann::json report_;
};

/// The daemon's peak resident memory (VmHWM of /proc/PID/status) in KiB; 0
/// when unreadable.
inline std::size_t PeakRssKiB(pid_t pid) {
  std::string status;
  int fd = ::open(("/proc/" + std::to_string(pid) + "/status").c_str(), O_RDONLY | O_CLOEXEC);
  char buf[8192];
  for (ssize_t n; fd >= 0 && (n = ::read(fd, buf, sizeof buf)) > 0;) {
    status.append(buf, static_cast<std::size_t>(n));
  }
  if (fd >= 0) {
    ::close(fd);
  }
  auto at = status.find("VmHWM:");
  return at == std::string::npos ? 0 : std::stoul(status.substr(at + 6));
}

}  // namespace vfiod::itest
