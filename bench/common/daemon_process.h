// A vfiod process started for a benchmark: its own folder, config and socket.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <string>

#include "proto/result.h"

namespace vfiod::bench {

/// Owns a running vfiod child. Destruction stops it (SIGTERM, wait).
class DaemonProcess {
 public:
  /// Writes `config` to <dir>/vfiod.json (its socket.path is set to
  /// <dir>/vfiod.sock), starts `binary --config ... --foreground` with stderr
  /// to <dir>/vfiod.log, and waits until the socket accepts a connection.
  /// ECHILD: the daemon exited during start-up (its log is printed);
  /// ETIMEDOUT: the socket did not answer within 20 s; errno of fork/open.
  [[nodiscard]] static Result<DaemonProcess> Start(const std::string& binary,
                                                   const std::string& dir, nlohmann::json config);
  DaemonProcess(DaemonProcess&& other) noexcept;
  DaemonProcess& operator=(DaemonProcess&&) = delete;
  DaemonProcess(const DaemonProcess&) = delete;
  DaemonProcess& operator=(const DaemonProcess&) = delete;
  ~DaemonProcess();

  /// SIGTERM and wait; returns the exit status (-1 when killed by a signal).
  int Stop();

  [[nodiscard]] pid_t pid() const { return pid_; }
  [[nodiscard]] const std::string& socket() const { return socket_; }
  [[nodiscard]] const std::string& log() const { return log_; }

 private:
  DaemonProcess(pid_t pid, std::string socket, std::string log)
      : pid_(pid), socket_(std::move(socket)), log_(std::move(log)) {}

  pid_t pid_ = -1;
  std::string socket_;
  std::string log_;
};

/// The "Name: value kB" lines of /proc/<pid>/status, in bytes (only the
/// fields measured in kB: VmRSS, RssAnon, RssFile, RssShmem, VmLck, ...).
[[nodiscard]] std::map<std::string, uint64_t> ProcStatusBytes(pid_t pid);

/// Entries of /proc/<pid>/fd and lines of /proc/<pid>/maps (fds and VMAs).
[[nodiscard]] uint64_t CountFds(pid_t pid);
[[nodiscard]] uint64_t CountMaps(pid_t pid);

/// The soft RLIMIT_NOFILE of process `pid` (from /proc/<pid>/limits), 0 if unknown.
[[nodiscard]] uint64_t OpenFilesLimit(pid_t pid);

/// An integer read from a /proc/sys or /sys file, 0 if unreadable.
[[nodiscard]] uint64_t ReadNumber(const std::string& path);

}  // namespace vfiod::bench
