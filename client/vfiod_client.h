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
// Its implicit moves are noexcept (json's and the vector's are); the check
// follows json's move constructor into paths that cannot throw there.
// NOLINTNEXTLINE(bugprone-exception-escape)
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

/// How a client keeps its session across restarts of vfiod (Client::KeepSession).
struct ResumeOptions {
  /// How long to keep trying to reconnect once the daemon is gone.
  std::chrono::milliseconds reconnect_for{30'000};
  /// Told after each reconnection with session.resume's result
  /// ({"containers": n, "mappings": n}), or with null when the new daemon
  /// kept nothing for this session (started without a store, or the grace
  /// period was over).
  std::function<void(const nlohmann::json& resumed)> on_resumed;
};
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

  /// Keeps this client's session across restarts of vfiod. Fetches the
  /// session's resume token now (session.info); from then on, when a call
  /// finds the connection gone (kClientTransport), the client connects to
  /// the same socket again (trying for options.reconnect_for) and resumes the
  /// session (session.resume), so the unnamed containers and mappings the
  /// restart kept come back to it, then fetches the new session's token.
  /// The call that found the daemon gone is sent again when it only reads
  /// (KeepSessionRetries); any other returns its transport error, since it
  /// may have run before the restart. Errors: session.info's.
  [[nodiscard]] std::expected<void, wire::RpcError> KeepSession(ResumeOptions options = {});

  /// Sets the receiver of notifications (progress) that arrive during calls.
  void OnNotification(NotificationHandler handler) { on_notification_ = std::move(handler); }

  /// Waits up to `timeout` (kNoTimeout: for ever; 0: only what arrived) for
  /// notifications sent while no call runs (release notices:
  /// client/release.h) and passes each to the handler. Returns how many
  /// arrived. Errors: kClientTransport (connection gone).
  [[nodiscard]] std::expected<std::size_t, wire::RpcError> PollNotifications(
      std::chrono::milliseconds timeout);

  /// The socket, for poll()ing by callers that multiplex.
  [[nodiscard]] int fd() const { return fd_.get(); }

 private:
  struct Resume;  // KeepSession's state (vfiod_client_resume.cc)
  explicit Client(UniqueFd fd);
  /// One Call on the current connection.
  [[nodiscard]] CallResult CallOnce(const std::string& method, const nlohmann::json& params,
                                    std::span<const int> fds, std::chrono::milliseconds timeout);
  /// Connects again and resumes the session (see KeepSession); false when
  /// no daemon answered in time.
  bool Reconnect();

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
  std::string path_;                // the socket Connect used
  std::shared_ptr<Resume> resume_;  // null until KeepSession
};

/// Whether a call of `method` only reads, so KeepSession may send it again
/// after reconnecting.
[[nodiscard]] bool KeepSessionRetries(const std::string& method);

}  // namespace vfiod::client
