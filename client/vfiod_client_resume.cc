// Client::KeepSession: a client that survives a restart of vfiod. The daemon
// keeps a dead connection's unnamed objects for a grace period after a
// restart; the client comes back with its session's token and claims them.
#include <algorithm>
#include <array>
#include <string_view>
#include <thread>

#include "client/vfiod_client.h"

namespace vfiod::client {

using nlohmann::json;

struct Client::Resume {
  ResumeOptions options;
  std::string token;  ///< the current session's (session.info)
};

bool KeepSessionRetries(const std::string& method) {
  static constexpr std::array<std::string_view, 14> kReads = {
      "ping",         "version",      "status",         "stats",         "metrics",
      "session.info", "rpc.discover", "device.list",    "device.info",   "dma.list",
      "dma.info",     "dma.regions",  "container.list", "container.info"};
  return std::find(kReads.begin(), kReads.end(), method) != kReads.end();
}

std::expected<void, wire::RpcError> Client::KeepSession(ResumeOptions options) {
  auto info = CallOnce("session.info", nullptr, {}, kDefaultTimeout);
  if (!info) {
    return std::unexpected(std::move(info).error());
  }
  resume_ = std::make_shared<Resume>();
  resume_->options = std::move(options);
  resume_->token = info->result.value("token", std::string());
  return {};
}

CallResult Client::Call(const std::string& method, const json& params, std::span<const int> fds,
                        std::chrono::milliseconds timeout) {
  CallResult result = CallOnce(method, params, fds, timeout);
  if (result || !resume_ || result.error().code != wire::kClientTransport || !Reconnect()) {
    return result;
  }
  if (KeepSessionRetries(method)) {
    return CallOnce(method, params, fds, timeout);
  }
  return result;
}

bool Client::Reconnect() {
  const auto deadline = std::chrono::steady_clock::now() + resume_->options.reconnect_for;
  for (;;) {
    if (auto fresh = Connect(path_)) {
      fd_ = std::move(fresh->fd_);
      framer_ = std::move(fresh->framer_);
      break;
    }
    if (std::chrono::steady_clock::now() >= deadline) {
      return false;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  // Nothing kept for the old token is not an error: the new daemon may have
  // started without a store, or after the grace period.
  auto resumed = CallOnce("session.resume", json{{"token", resume_->token}}, {}, kDefaultTimeout);
  if (auto info = CallOnce("session.info", nullptr, {}, kDefaultTimeout)) {
    resume_->token = info->result.value("token", std::string());
  }
  if (resume_->options.on_resumed) {
    resume_->options.on_resumed(resumed ? resumed->result : json(nullptr));
  }
  return true;
}

}  // namespace vfiod::client
