// Release notices for programs built on the client library: vfiod's word
// that the kernel wants a device back (device.release_requested) and that
// the container holding it was revoked (device.revoked); proto/openrpc.json
// (DeviceReleaseRequested, DeviceRevoked) and config/README.md ("device")
// say when they come.
//
// The kernel's unbind of a device waits until every fd of it is closed, and
// vfiod cannot close a client's: a program must close its device fd (and
// unmap its BAR mmaps, which hold the device file too) on the request.
// DeviceReleaser does the closing for the fds it keeps.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "client/vfiod_client.h"
#include "proto/unique_fd.h"

namespace vfiod::client {

/// One release notice.
struct ReleaseNotice {
  bool revoked = false;  ///< false: device.release_requested; true: device.revoked
  std::string bdf;       ///< the device the kernel asked for
  uint64_t container = 0;
  uint64_t grace_ms = 0;           ///< requested: time left before the revoke
  uint64_t unmapped_bytes = 0;     ///< revoked: bytes vfiod unmapped
  std::vector<uint64_t> mappings;  ///< revoked: this connection's mappings that went
  std::string reason;              ///< for people
};

/// The notice a notification carries; nullopt for another method, or params
/// of the wrong shape.
[[nodiscard]] std::optional<ReleaseNotice> ParseReleaseNotice(const std::string& method,
                                                              const nlohmann::json& params);

/// Device fds a program keeps, by BDF, closed as soon as vfiod forwards the
/// kernel's request for their device. Install Handler() as the client's
/// notification handler; notifications arrive during calls, or from
/// Client::PollNotifications while the program has no call to make. Not
/// thread-safe (as Client); must outlive the handler it gave out.
class DeviceReleaser {
 public:
  /// Called on a request before the device's fds close: stop the device's
  /// DMA, unmap its BARs.
  using BeforeClose = std::function<void(const ReleaseNotice& notice)>;
  explicit DeviceReleaser(BeforeClose before = {}) : before_(std::move(before)) {}

  /// Keeps `fd` (a device.open fd of `bdf`); returns it, borrowed, for use.
  int Keep(const std::string& bdf, UniqueFd fd);
  /// The fd kept for `bdf`; -1 when none, or released.
  [[nodiscard]] int fd(const std::string& bdf) const;
  /// The handler: on device.release_requested it calls BeforeClose and
  /// closes the fds kept for that BDF; every release notice is queued for
  /// TakeNotices; other notifications go to `next`.
  [[nodiscard]] NotificationHandler Handler(NotificationHandler next = {});
  /// The release notices received since the last call, oldest first.
  [[nodiscard]] std::vector<ReleaseNotice> TakeNotices();

 private:
  void Handle(const ReleaseNotice& notice);

  BeforeClose before_;
  std::multimap<std::string, UniqueFd> fds_;
  std::vector<ReleaseNotice> notices_;
};

}  // namespace vfiod::client
