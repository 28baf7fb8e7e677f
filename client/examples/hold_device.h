// Holding a device until the kernel wants it back: what a long-running driver
// does with vfiod's release notices (client/release.h). Header-only, for the
// example drivers.
#pragma once

#include <chrono>
#include <optional>
#include <string>

#include "client/release.h"
#include "client/vfiod_client.h"

namespace vfiod::examples {

/// Reads notifications (Client::PollNotifications) until vfiod forwards the
/// kernel's request for `bdf` (device.release_requested); other
/// notifications go to the handler the client had. The caller must then
/// stop the device, unmap its BARs and close its fd: the kernel's unbind
/// waits for that. nullopt when the connection ended first.
inline std::optional<client::ReleaseNotice> AwaitReleaseRequest(client::Client& c,
                                                                const std::string& bdf) {
  std::optional<client::ReleaseNotice> asked;
  client::DeviceReleaser watch;  // keeps no fd: only recognises the notices
  c.OnNotification(watch.Handler());
  while (!asked) {
    if (!c.PollNotifications(client::kNoTimeout)) {
      break;
    }
    for (client::ReleaseNotice& n : watch.TakeNotices()) {
      if (!n.revoked && n.bdf == bdf) {
        asked = std::move(n);
      }
    }
  }
  c.OnNotification({});
  return asked;
}

}  // namespace vfiod::examples
