// One client connection: line framing, fd passing, dispatch and output queue.
#pragma once

#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/thread_pool.hpp>
#include <deque>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "proto/framing.h"
#include "proto/unique_fd.h"
#include "rpc/method_registry.h"
#include "rpc/server_config.h"

namespace vfiod::rpc {

namespace asio = boost::asio;

/// What a connection needs from its server.
struct ConnectionEnv {
  const MethodRegistry* registry = nullptr;
  asio::thread_pool::executor_type workers;
  ServerConfig config;
  /// Called once on the connection's strand when the connection has closed
  /// and none of its calls is still running.
  std::function<void(const std::shared_ptr<ConnectionInfo>&)> on_closed;
};

/// A served connection. Every member below the strand is owned by strand_:
/// only code running on it touches them (queued_bytes_ is also read, never
/// written, by other threads to decide on dropping notifications).
class Connection : public std::enable_shared_from_this<Connection> {
 public:
  Connection(asio::io_context& io, UniqueFd fd, std::shared_ptr<ConnectionInfo> info,
             ConnectionEnv env);
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;
  ~Connection();

  /// Starts reading. Call once, after construction.
  void Start();
  /// Closes the connection from any thread (server shutdown).
  void Close();
  [[nodiscard]] ConnectionId id() const { return info_->id; }

 private:
  /// A reply ready to be written: the message and the fds it refers to.
  struct Outgoing {
    nlohmann::json message;
    std::vector<UniqueFd> fds;
  };
  /// A line queued for output; fds leave with its first byte.
  struct OutFrame {
    std::string bytes;
    std::vector<UniqueFd> fds;
    std::size_t sent = 0;
  };
  using Done = std::function<void(std::optional<Outgoing>)>;
  struct Batch;

  // Input (connection.cc).
  void WaitReadable();
  void ReadSome();
  void OnPeerEof();
  // Dispatch (connection_dispatch.cc).
  void OnFrame(wire::Frame frame);
  void OnBatch(nlohmann::json& doc, const std::shared_ptr<ReceivedFds>& fds, bool fd_error);
  void SendBatch(Batch& batch);
  /// Checks one request and runs it, or answers it at once. In a batch,
  /// `reply_fd_budget` holds the fds its reply line may still carry: a method
  /// declaring more is answered kFdError without running (nullptr: no batch).
  void Dispatch(nlohmann::json element, const std::shared_ptr<ReceivedFds>& fds, bool fd_error,
                std::size_t* reply_fd_budget, Done done);
  void Run(const MethodRegistry::Method& method, CallContext ctx, nlohmann::json params,
           std::optional<nlohmann::json> id, Done done);
  void Finish(const MethodRegistry::Method& method, std::optional<nlohmann::json> id,
              HandlerResult result, const Done& done);
  // Output (connection.cc).
  void Send(Outgoing out);
  bool NotifyFromAnyThread(nlohmann::json message);
  void WriteSome();
  /// One sendmsg from the front of out_: a line with fds alone, else as many
  /// fd-less lines as fit in one call. Errors as wire::SendWithFds.
  Result<std::size_t> SendFront();
  /// Marks `sent` bytes from the front of out_ as written.
  void Consume(std::size_t sent);
  void AfterOutputDrained();
  void CloseNow();
  void MaybeReportClosed();

  std::shared_ptr<ConnectionInfo> info_;  // shared with the call contexts
  ConnectionEnv env_;
  asio::strand<asio::io_context::executor_type> strand_;
  // The socket holds the connection's fd; it is declared after the strand it
  // runs on and closed explicitly by CloseNow().
  asio::local::stream_protocol::socket socket_;
  wire::LineFramer framer_;
  std::vector<char> read_buf_;
  std::deque<OutFrame> out_;
  std::atomic<std::size_t> queued_bytes_{0};
  std::size_t inflight_ = 0;
  bool reading_ = false;            // an async_wait for input is pending
  bool writing_ = false;            // WriteSome is waiting for POLLOUT
  bool corked_ = false;             // ReadSome is handling lines: Send only queues
  bool read_paused_ = false;        // output over the limit: resume when drained
  bool stop_reading_ = false;       // peer EOF or fatal framing error
  bool close_after_flush_ = false;  // oversized frame: reply, then close
  bool closed_ = false;
  bool close_reported_ = false;
};

}  // namespace vfiod::rpc
