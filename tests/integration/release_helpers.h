// What the release tests in the VM share (vm_release_test.cc,
// vm_restart_test.cc): a real unbind through sysfs, binding back, and waiting
// for vfiod's release notices.
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <optional>
#include <string>
#include <thread>

#include "client/release.h"
#include "client/vfiod_client.h"
#include "daemon_harness.h"

namespace vfiod::itest {

/// An unbind of `bdf` from its driver, written from a thread of its own: it
/// returns only once the kernel let go of the device.
class Unbind {
 public:
  explicit Unbind(std::string bdf) : bdf_(std::move(bdf)) {
    thread_ = std::thread([this] {
      const std::string path = "/sys/bus/pci/devices/" + bdf_ + "/driver/unbind";
      int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
      errno_ = fd < 0 ? errno : 0;
      if (fd >= 0) {
        errno_ = ::write(fd, bdf_.data(), bdf_.size()) < 0 ? errno : 0;
        ::close(fd);
      }
      done_ = true;
    });
  }
  ~Unbind() { thread_.join(); }
  Unbind(const Unbind&) = delete;
  Unbind& operator=(const Unbind&) = delete;
  [[nodiscard]] bool done() const { return done_; }
  /// Waits (a hang guard of 60 s, not a timing assert) for the unbind;
  /// "" when it went through.
  std::string Await() const {
    for (int i = 0; i < 6000 && !done_; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    if (!done_) {
      return "the unbind did not complete";
    }
    return errno_ == 0 ? "" : "unbind: " + std::string(std::strerror(errno_));
  }

 private:
  std::string bdf_;
  std::atomic<bool> done_{false};
  std::atomic<int> errno_{0};
  std::thread thread_;
};

/// Binds `bdf` back to vfio-pci (its driver_override still says vfio-pci).
inline bool BindBack(const std::string& bdf) {
  WriteFile("/sys/bus/pci/drivers_probe", bdf);
  std::error_code ec;
  const auto driver = fs::read_symlink("/sys/bus/pci/devices/" + bdf + "/driver", ec);
  return !ec && driver.filename() == "vfio-pci";
}

/// Reads notifications until one of `revoked` kind arrives (20 s at most).
inline std::optional<client::ReleaseNotice> AwaitNotice(client::Client& c,
                                                        client::DeviceReleaser& r, bool revoked) {
  for (int i = 0; i < 200; ++i) {
    for (const client::ReleaseNotice& n : r.TakeNotices()) {
      if (n.revoked == revoked) {
        return n;
      }
    }
    if (!c.PollNotifications(std::chrono::milliseconds(100))) {
      return std::nullopt;
    }
  }
  return std::nullopt;
}

}  // namespace vfiod::itest
