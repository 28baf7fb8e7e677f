#include "service/metrics_textfile.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>

#include "proto/unique_fd.h"
#include "service/service.h"

namespace vfiod::service {

namespace {

/// write(2) all of `text`, across short writes and EINTR.
Result<void> WriteAll(int fd, std::string_view text, const std::string& what) {
  while (!text.empty()) {
    ssize_t n = ::write(fd, text.data(), text.size());
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0) {
      return ErrnoError("write " + what);
    }
    text.remove_prefix(static_cast<size_t>(n));
  }
  return Ok();
}

}  // namespace

Result<void> MetricsTextfile::WriteAtomically(const std::string& path, std::string_view text) {
  const size_t slash = path.rfind('/');
  const std::string dir = slash == std::string::npos ? "." : path.substr(0, slash);
  const std::string base = path.substr(slash == std::string::npos ? 0 : slash + 1);
  // ".vfiod.prom.XXXXXX": a dot file not ending in .prom, which the collector skips.
  std::string temp = dir + "/." + base + ".XXXXXX";
  UniqueFd fd(::mkostemp(temp.data(), O_CLOEXEC));
  if (!fd) {
    return ErrnoError("create a temp file in " + dir);
  }
  auto written = [&]() -> Result<void> {
    if (::fchmod(fd.get(), 0644) != 0) {  // mkostemp makes it 0600
      return ErrnoError("fchmod " + temp);
    }
    VFIOD_TRY(WriteAll(fd.get(), text, temp));
    if (::close(fd.release()) != 0) {  // NFS and friends report write errors here
      return ErrnoError("close " + temp);
    }
    if (::rename(temp.c_str(), path.c_str()) != 0) {
      return ErrnoError("rename " + temp + " to " + path);
    }
    return Ok();
  }();
  if (!written) {
    fd.reset();
    (void)::unlink(temp.c_str());
  }
  return written;
}

MetricsTextfile::MetricsTextfile(std::string path, std::chrono::milliseconds interval,
                                 std::function<std::string()> render)
    : path_(std::move(path)),
      interval_(interval),
      render_(std::move(render)),
      thread_([this] { Run(); }) {}

MetricsTextfile::~MetricsTextfile() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  wake_.notify_all();
  thread_.join();
  if (::unlink(path_.c_str()) != 0 && errno != ENOENT) {
    spdlog::warn("metrics textfile: removing {}: {}", path_,
                 ErrnoError("unlink").error().message());
  }
}

void MetricsTextfile::Run() {
  std::unique_lock lock(mu_);
  while (!stopping_) {
    lock.unlock();
    WriteOnce();
    lock.lock();
    const auto next = std::chrono::steady_clock::now() + interval_;
    wake_.wait_until(lock, next, [&] { return stopping_; });
  }
}

void MetricsTextfile::WriteOnce() {
  if (auto written = WriteAtomically(path_, render_()); !written) {
    ++failures_;
    std::string error = written.error().message();
    if (error != last_error_) {
      spdlog::warn("metrics textfile {}: {} (retrying every {} ms)", path_, error,
                   interval_.count());
      last_error_ = std::move(error);
    }
    return;
  }
  ++writes_;
  if (!last_error_.empty()) {
    spdlog::info("metrics textfile {}: written again", path_);
    last_error_.clear();
  }
}

std::unique_ptr<MetricsTextfile> StartMetricsTextfile(const Service& service) {
  const MetricsConfig& config = service.config().metrics;
  if (!config.textfile) {
    return nullptr;
  }
  spdlog::info("metrics: writing {} every {} s", *config.textfile, config.interval_seconds);
  return std::make_unique<MetricsTextfile>(
      *config.textfile, std::chrono::seconds(config.interval_seconds),
      [&service] { return RenderMetrics(service.MetricsOf(std::nullopt)); });
}

}  // namespace vfiod::service
