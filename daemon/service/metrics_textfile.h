// The Prometheus textfile vfiod writes for node_exporter's textfile
// collector (config "metrics": textfile, interval_seconds): the text of
// RenderMetrics, rewritten at an interval on a thread of its own, so the
// socket thread never waits for the file system.
//
// node_exporter's convention: a file named *.prom in the collector's
// directory, replaced whole with rename(2) so the collector never reads half
// a file: the text goes to a temp file in the same directory (a dot file not
// named *.prom, which the collector skips), mode 0644 whatever the umask,
// then is renamed over the target. A write that fails (the directory is
// missing or read-only, the disk is full) is logged, its temp file removed,
// and the writer goes on: the next interval tries again. The log says so
// once per kind of failure, and once when writing works again.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>

#include "proto/result.h"

namespace vfiod::service {

class Service;

class MetricsTextfile {
 public:
  /// Starts the writer: writes `render()` to `path` at once, then every
  /// `interval`. `render` runs on the writer's thread and must be safe to
  /// call from it (Service::MetricsOf is).
  MetricsTextfile(std::string path, std::chrono::milliseconds interval,
                  std::function<std::string()> render);
  /// Stops the writer (waits for a write in progress) and removes the file:
  /// a vfiod that stopped has no figures to report, and a stale file would
  /// say otherwise.
  ~MetricsTextfile();
  MetricsTextfile(const MetricsTextfile&) = delete;
  MetricsTextfile& operator=(const MetricsTextfile&) = delete;
  MetricsTextfile(MetricsTextfile&&) = delete;
  MetricsTextfile& operator=(MetricsTextfile&&) = delete;

  /// Writes done and writes failed so far (for tests and the log).
  [[nodiscard]] uint64_t writes() const { return writes_.load(); }
  [[nodiscard]] uint64_t failures() const { return failures_.load(); }

  /// Replaces `path` with `text` atomically as described above. Errors: the
  /// errno of mkostemp (ENOENT: no such directory; EACCES, EROFS), of
  /// fchmod, write (ENOSPC), close or rename; nothing is left behind.
  [[nodiscard]] static Result<void> WriteAtomically(const std::string& path, std::string_view text);

 private:
  void Run();
  void WriteOnce();

  const std::string path_;
  const std::chrono::milliseconds interval_;
  const std::function<std::string()> render_;
  std::atomic<uint64_t> writes_{0};
  std::atomic<uint64_t> failures_{0};
  std::string last_error_;  // the writer thread's alone: what was last logged
  std::mutex mu_;
  std::condition_variable wake_;
  bool stopping_ = false;  // guarded by mu_
  std::thread thread_;     // last: started once every member above is ready
};

/// The writer the service's config asks for (metrics.textfile, at
/// metrics.interval_seconds, writing RenderMetrics of MetricsOf(nullopt)),
/// or null when no textfile is configured. Destroy it before `service`.
[[nodiscard]] std::unique_ptr<MetricsTextfile> StartMetricsTextfile(const Service& service);

}  // namespace vfiod::service
