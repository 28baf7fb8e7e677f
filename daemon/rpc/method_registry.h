// The methods a JSON-RPC server offers, and what a handler sees of its call.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <expected>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "proto/jsonrpc.h"
#include "proto/result.h"
#include "proto/unique_fd.h"
#include "rpc/peer_credentials.h"

namespace vfiod::rpc {

using ConnectionId = std::uint64_t;

/// The fds one received line carried, shared by the requests of that line (a
/// batch). Thread-safe: blocking handlers of one batch may run concurrently.
class ReceivedFds {
 public:
  explicit ReceivedFds(std::vector<UniqueFd> fds) : fds_(std::move(fds)) {}

  /// Moves out the fd at `index`. Errors: EBADF (no such fd, or already taken).
  [[nodiscard]] Result<UniqueFd> Take(std::size_t index);
  /// How many fds the line carried (taken or not).
  [[nodiscard]] std::size_t size() const;
  /// Closes every fd whose index is not in `keep`.
  void CloseAllBut(const std::vector<std::size_t>& keep);

 private:
  mutable std::mutex mu_;
  std::vector<UniqueFd> fds_;  // guarded by mu_
};

/// What stays the same for every call on one connection. Shared between the
/// connection and the contexts of its calls, which may outlive it.
struct ConnectionInfo {
  ConnectionId id = 0;
  PeerCredentials peer;
  /// Set (once, never cleared) when the connection closes; handlers poll it.
  std::atomic<bool> closed{false};
  /// Queues a notification line to the connection; false if it was dropped
  /// (connection gone, or its output queue over the limit). Thread-safe.
  std::function<bool(nlohmann::json)> notify;
};

/// What a handler gets besides its params. Lives for one call.
class CallContext {
 public:
  using Clock = std::chrono::steady_clock;

  CallContext(std::shared_ptr<ConnectionInfo> conn, std::shared_ptr<ReceivedFds> fds,
              nlohmann::json id)
      : conn_(std::move(conn)), fds_(std::move(fds)), id_(std::move(id)) {}

  /// When the server took up the request's line (its parse began) and when
  /// it dispatched the call (queued it for a worker, or ran it); the
  /// transport sets both before the handler runs. Unset (the clock's epoch)
  /// for a context made outside the server.
  void SetTimes(Clock::time_point received, Clock::time_point dispatched) {
    received_ = received;
    dispatched_ = dispatched;
  }
  [[nodiscard]] Clock::time_point received_at() const { return received_; }
  [[nodiscard]] Clock::time_point dispatched_at() const { return dispatched_; }

  [[nodiscard]] ConnectionId connection_id() const { return conn_->id; }
  [[nodiscard]] const PeerCredentials& peer() const { return conn_->peer; }
  /// The request id (null for a notification).
  [[nodiscard]] const nlohmann::json& id() const { return id_; }

  /// Takes the fd that params referred to as {"fd": index}; the caller owns it.
  /// Errors: EBADF (the message carried no such fd, or it was taken already).
  [[nodiscard]] Result<UniqueFd> TakeFd(std::size_t index) { return fds_->Take(index); }
  [[nodiscard]] std::size_t fd_count() const { return fds_->size(); }

  /// Sends {"jsonrpc":"2.0","method":method,"params":params} to this
  /// connection (progress reports). Callable from any thread. Returns false if
  /// it was dropped: connection closed, or its output queue is full.
  bool Notify(const std::string& method, const nlohmann::json& params) const;

  /// The connection, for notifications sent after this call (Connection-
  /// Info::notify); expires with it.
  [[nodiscard]] std::weak_ptr<ConnectionInfo> connection() const { return conn_; }

  /// True once the connection has closed: the reply will go nowhere, so a
  /// long handler should stop early and release what it took.
  [[nodiscard]] bool cancelled() const { return conn_->closed.load(std::memory_order_acquire); }

 private:
  std::shared_ptr<ConnectionInfo> conn_;
  std::shared_ptr<ReceivedFds> fds_;
  nlohmann::json id_;
  Clock::time_point received_{};
  Clock::time_point dispatched_{};
};

/// A successful handler's answer: the result, and fds to send with it, which
/// `result` refers to as {"fd": i} (i indexes `fds`).
struct Reply {
  Reply() = default;
  Reply(nlohmann::json r) : result(std::move(r)) {}  // NOLINT: implicit by design
  Reply(nlohmann::json r, std::vector<UniqueFd> f) : result(std::move(r)), fds(std::move(f)) {}
  /// A result that is compact JSON text serialised once ahead and shared by
  /// every reply (rpc.discover): spliced into the reply line as it is, never
  /// parsed or copied into a JSON value. It must hold no fd references.
  static Reply Text(std::shared_ptr<const std::string> text) {
    Reply r;
    r.result_text = std::move(text);
    return r;
  }

  nlohmann::json result;  ///< unused when result_text is set
  std::vector<UniqueFd> fds;
  std::shared_ptr<const std::string> result_text;
};

using HandlerResult = std::expected<Reply, wire::RpcError>;

/// A method body. `params` is an object or array (an empty object when the
/// request had none). Exceptions escaping it become kInternalError.
using Handler = std::function<HandlerResult(CallContext& ctx, const nlohmann::json& params)>;

struct MethodOptions {
  /// Runs on the worker pool instead of the connection's strand. Required for
  /// anything that may sleep or issue slow syscalls (DMA map, device reset).
  bool blocking = false;
  /// Accept positional (array) params; otherwise they are kInvalidParams.
  bool allow_array_params = false;
  /// The most fds a successful reply may carry (at most
  /// wire::kMaxFdsPerMessage). A batch line's reply carries the fds of all its
  /// elements, so the server checks the declared totals before running any
  /// element: the elements past the limit are answered kFdError without
  /// running. A handler returning more fds than declared is a bug: its reply
  /// becomes kInternalError and the fds are closed.
  std::size_t reply_fds = 0;
  /// Called once a reply of this method is built and serialised, with the
  /// peer's uid and the time that took after the handler returned, just
  /// before it is handed to the socket (so whatever the client asks after
  /// reading the reply sees it counted; the sendmsg itself is not in it).
  /// Not for notifications nor for calls whose connection closed first. Runs
  /// on the thread that built the reply (a worker or the strand): it must be
  /// thread-safe and cheap. May be empty.
  std::function<void(uid_t uid, std::chrono::nanoseconds reply)> on_reply = nullptr;
};

/// Name -> handler. Filled before the server starts, read-only afterwards (so
/// lookups need no lock).
class MethodRegistry {
 public:
  struct Method {
    Handler handler;
    MethodOptions options;
  };

  /// Adds a method. Errors: EEXIST (name taken), EINVAL (empty name, no
  /// handler, or options.reply_fds over wire::kMaxFdsPerMessage).
  [[nodiscard]] Result<void> Register(const std::string& name, Handler handler,
                                      const MethodOptions& options = {});

  /// The method called `name`, or nullptr.
  [[nodiscard]] const Method* Find(const std::string& name) const;

  /// All method names, sorted (for rpc.discover).
  [[nodiscard]] std::vector<std::string> Names() const;

 private:
  std::map<std::string, Method> methods_;
};

}  // namespace vfiod::rpc
