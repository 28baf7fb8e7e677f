// vfiod client library: blocking JSON-RPC 2.0 calls over the daemon's unix
// socket, with fd passing. Links only vfiod_proto; no Asio, no threads.
//
// A Client is not thread-safe: use one per thread (connections are cheap).
#pragma once

#include <chrono>
#include <cstdint>
#include <expected>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <span>
#include <string>
#include <vector>

#include "proto/framing.h"
#include "proto/jsonrpc.h"
#include "proto/result.h"
#include "proto/unique_fd.h"

namespace vfiod::client {

/// A successful call: the result and the fds its reply carried. `result`
/// refers to them as {"fd": i}, i indexing `fds`.
struct Response {
  nlohmann::json result;
  std::vector<UniqueFd> fds;
};

/// The daemon's error object, or a local one (wire::kClientTransport,
/// kClientTimeout, kClientProtocol; data.errno says why for transport errors).
using CallResult = std::expected<Response, wire::RpcError>;

/// One element of a batch. A notification gets no entry in the results.
struct BatchCall {
  std::string method;
  nlohmann::json params;  ///< object/array, or null for none
  bool notification = false;
};

/// Called, during a Call, for every notification the daemon sends (progress).
using NotificationHandler =
    std::function<void(const std::string& method, const nlohmann::json& params)>;

inline constexpr std::chrono::milliseconds kDefaultTimeout{30'000};
/// A timeout meaning "wait as long as it takes".
inline constexpr std::chrono::milliseconds kNoTimeout{-1};

class Client {
 public:
  /// Connects to the daemon socket at `path`. Errors: ENAMETOOLONG, ENOENT,
  /// ECONNREFUSED (no daemon), EACCES (socket permissions), other connect errnos.
  [[nodiscard]] static Result<Client> Connect(const std::string& path);

  Client(Client&&) noexcept = default;
  Client& operator=(Client&&) noexcept = default;
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;
  ~Client() = default;

  /// Calls `method` and waits for its reply. `fds` (borrowed, not closed) go
  /// with the request; params refer to them as {"fd": i}. A reply that does not
  /// arrive within `timeout` is kClientTimeout; if it comes later it is dropped.
  [[nodiscard]] CallResult Call(const std::string& method, const nlohmann::json& params = nullptr,
                                std::span<const int> fds = {},
                                std::chrono::milliseconds timeout = kDefaultTimeout);

  /// Sends a notification (no reply). Errors: kClientTransport.
  [[nodiscard]] std::expected<void, wire::RpcError> Notify(const std::string& method,
                                                           const nlohmann::json& params = nullptr,
                                                           std::span<const int> fds = {});

  /// Sends `calls` as one batch line; `fds` travel with it and any element may
  /// refer to them. Returns one CallResult per non-notification call, in the
  /// order of `calls`, each with its own fds. The outer error is for failures
  /// of the batch as a whole (transport, timeout, a single error reply).
  [[nodiscard]] std::expected<std::vector<CallResult>, wire::RpcError> Batch(
      const std::vector<BatchCall>& calls, std::span<const int> fds = {},
      std::chrono::milliseconds timeout = kDefaultTimeout);

  /// Sets the receiver of notifications (progress) that arrive during calls.
  void OnNotification(NotificationHandler handler) { on_notification_ = std::move(handler); }

  /// The socket, for poll()ing by callers that multiplex.
  [[nodiscard]] int fd() const { return fd_.get(); }

 private:
  explicit Client(UniqueFd fd);

  std::expected<void, wire::RpcError> SendLine(const std::string& line, std::span<const int> fds,
                                               std::chrono::steady_clock::time_point deadline);
  /// Reads until a reply for one of `ids` (or an id-null error) arrives,
  /// passing notifications to the handler and dropping late replies.
  std::expected<wire::Frame, wire::RpcError> AwaitReply(
      const std::vector<std::int64_t>& ids, std::chrono::steady_clock::time_point deadline,
      nlohmann::json& reply);
  std::expected<void, wire::RpcError> ReadMore(std::chrono::steady_clock::time_point deadline);

  UniqueFd fd_;
  std::unique_ptr<wire::LineFramer> framer_;  // behind a pointer to keep Client movable
  std::vector<char> read_buf_;                // ReadMore's buffer, reused by every read
  NotificationHandler on_notification_;
  std::int64_t next_id_ = 1;
};

}  // namespace vfiod::client
