// Release notices: the service's word that the kernel wants a device back,
// sent to the session's connection as JSON-RPC notifications
// (proto/openrpc.json, x-notifications: device.release_requested,
// device.revoked). They come from the service's release watcher thread.
#include <spdlog/spdlog.h>

#include "rpc/methods.h"

namespace vfiod::rpc {

using nlohmann::json;

void ServiceMethods::NotifyRelease(service::SessionId session,
                                   const service::ReleaseNotice& notice) {
  std::shared_ptr<ConnectionInfo> conn;
  {
    std::lock_guard lock(mu_);
    auto it = connections_.find(session);
    if (it != connections_.end()) {
      conn = it->second.lock();
    }
  }
  const bool requested = notice.kind == service::ReleaseNotice::Kind::kRequested;
  const char* method = requested ? "device.release_requested" : "device.revoked";
  json params = {{"bdf", notice.bdf}, {"container", notice.container}, {"reason", notice.reason}};
  if (requested) {
    params["grace_ms"] = notice.grace_ms;
  } else {
    params["unmapped_bytes"] = notice.unmapped_bytes;
    params["mappings"] = notice.mappings;
  }
  if (!conn || !conn->notify || !conn->notify(wire::MakeRequest(method, params, std::nullopt))) {
    spdlog::info("{} of {} (container {}) not delivered to session {}: connection gone or full",
                 method, notice.bdf, notice.container, session);
  }
}

}  // namespace vfiod::rpc
