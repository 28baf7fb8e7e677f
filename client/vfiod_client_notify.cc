// Client::PollNotifications: notifications that arrive while no call runs
// (release notices: client/release.h).
#include "client/vfiod_client.h"

namespace vfiod::client {

using nlohmann::json;

std::expected<std::size_t, wire::RpcError> Client::PollNotifications(
    std::chrono::milliseconds timeout) {
  const auto deadline = timeout < std::chrono::milliseconds::zero()
                            ? std::chrono::steady_clock::time_point::max()
                            : std::chrono::steady_clock::now() + timeout;
  std::size_t seen = 0;
  for (;;) {
    while (framer_->has_frame()) {
      wire::Frame frame = framer_->Pop();
      if (wire::JsonNestingDepth(frame.line) > wire::kMaxJsonDepth) {
        continue;
      }
      json message = json::parse(frame.line, nullptr, false);
      if (message.is_object() && message.contains("method") && !message.contains("id")) {
        ++seen;
        if (on_notification_) {
          on_notification_(message["method"].get<std::string>(),
                           message.value("params", json(nullptr)));
        }
      }  // else a late reply to a call that timed out: dropped, as AwaitReply does
    }
    if (seen > 0) {
      return seen;
    }
    if (!fd_) {
      return std::unexpected(
          wire::MakeError(Error{ENOTCONN, "receive", "connection closed"}, wire::kClientTransport));
    }
    auto more = ReadMore(deadline);
    if (!more) {
      if (more.error().code == wire::kClientTimeout) {
        return std::size_t{0};
      }
      return std::unexpected(std::move(more).error());
    }
  }
}

}  // namespace vfiod::client
