// One client connection: line framing, fd passing, dispatch and output queue.
#pragma once

#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <chrono>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "proto/framing.h"
#include "proto/unique_fd.h"
#include "rpc/fair_executor.h"
#include "rpc/method_registry.h"
#include "rpc/server_config.h"

namespace vfiod::rpc {

namespace asio = boost::asio;

/// What a connection needs from its server.
struct ConnectionEnv {
  const MethodRegistry* registry = nullptr;
  /// Runs the blocking calls, queued by the peer's uid (the server's; it
  /// outlives every connection).
  FairExecutor* workers = nullptr;
  ServerConfig config;
  /// Called once on the connection's strand when the connection has closed
  /// and none of its calls is still running.
  std::function<void(const std::shared_ptr<ConnectionInfo>&)> on_closed;
};

/// A served connection. Input, dispatch and closing are owned by strand_: only
/// code running on it touches those members. The output side (the queue, the
/// socket's write end, the in-flight count and the flags other threads must
/// see) is guarded by out_mu_, because the worker that ran a blocking handler
/// writes that call's reply itself: the reply then wakes only the client, not
/// the io thread as well (see SendFromAnyThread).
class Connection : public std::enable_shared_from_this<Connection> {
 public:
  using Clock = std::chrono::steady_clock;

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
  /// From any thread: calls `done` on the strand with one line naming the
  /// connection's state (calls in flight, output queued or owed, whether it
  /// reads, lines held): for a report on a client that waits for an answer.
  void Describe(std::function<void(std::string)> done);

 private:
  /// A reply ready to be written: the message and the fds it refers to.
  struct Outgoing {
    nlohmann::json message;  ///< MakeResult(id, nullptr) when result_text is set
    std::vector<UniqueFd> fds;
    std::shared_ptr<const std::string> result_text;  ///< see Reply::result_text
    /// The reply's text (wire::ToLine), with or without the '\n'.
    [[nodiscard]] std::string Line(bool newline = true) const;
  };
  /// A line queued for output; fds leave with its first byte.
  struct OutFrame {
    std::string bytes;
    std::vector<UniqueFd> fds;
    std::size_t sent = 0;
  };
  /// Where a reply goes: a batch slot, or (empty) straight to the output.
  using Done = std::function<void(std::optional<Outgoing>)>;
  struct Batch;
  /// How writing the queue ended.
  enum class Flushed { kDrained, kBlocked, kFailed };

  // Input (connection.cc).
  /// Handles the lines the framer holds back, or waits for input; unless the
  /// output is over the limit (then AfterOutputDrained resumes).
  void WaitReadable();
  void ReadSome();
  /// Handles the complete lines the framer holds, one at a time, until the
  /// output queue passes max_output_bytes; then writes and waits for more.
  void HandleLines();
  void OnOversizedLine();
  void OnPeerEof();
  [[nodiscard]] bool OutputFull() const;
  // Timeouts (connection_timeouts.cc), all on the strand.
  /// After a read: restarts the line clock when a new incomplete line began.
  void NoteInput(bool had_partial);
  /// (Re)arms the timer to fire no later than `when`.
  void ArmDeadline(Clock::time_point when);
  void OnDeadline();
  /// Arms the timer for NextDeadline(), or to look again later when none applies.
  void ArmNextDeadline();
  /// A timeout and when it expires.
  struct Due {
    Clock::time_point when;
    std::string_view limit;  ///< "idle_timeout", "line_timeout" or "write_timeout"
  };
  /// The earliest timeout of the present state (nullopt: none applies now,
  /// e.g. a call is in flight and its reply is not yet queued).
  [[nodiscard]] std::optional<Due> NextDeadline();
  /// The shortest timeout configured (the poll interval while none applies).
  [[nodiscard]] Clock::duration ShortestTimeout() const;
  /// Sends one kBusy line naming `limit` if the socket takes it, and closes.
  void CloseForLimit(std::string_view limit, std::string detail);
  // Dispatch (connection_dispatch.cc).
  void OnFrame(wire::Frame frame);
  void OnBatch(nlohmann::json& doc, const std::shared_ptr<ReceivedFds>& fds, bool fd_error);
  void SendBatch(Batch& batch);
  /// Checks one request and runs it, or answers it at once. In a batch
  /// (`batch` not null), an element is answered without running when the
  /// batch's replies so far reached max_batch_reply_bytes (kBusy), or when its
  /// method declares more reply fds than the batch line may still carry
  /// (kFdError). `done` receives the reply of a batch element; a single
  /// request (empty `done`) is answered straight to the output.
  void Dispatch(nlohmann::json element, const std::shared_ptr<ReceivedFds>& fds, bool fd_error,
                Batch* batch, Done done);
  void Deliver(const Done& done, std::optional<Outgoing> out);
  void Run(const MethodRegistry::Method& method, CallContext ctx, nlohmann::json params,
           std::optional<nlohmann::json> id, Done done);
  /// On the strand: the end of a non-blocking call (`counted` false) or of a
  /// blocking batch element (`counted`: it was in flight).
  void Finish(const MethodRegistry::Method& method, std::optional<nlohmann::json> id,
              HandlerResult result, const Done& done, bool counted);
  /// On the worker that ran a blocking single request: its reply leaves from here.
  void FinishOnWorker(const MethodRegistry::Method& method, std::optional<nlohmann::json> id,
                      HandlerResult result);
  /// The reply line for a finished call (checks the fds the handler returned).
  [[nodiscard]] Outgoing MakeReply(const MethodRegistry::Method& method, const nlohmann::json& id,
                                   HandlerResult result) const;
  // Output (connection_output.cc).
  /// On the strand: queues `out` and writes unless corked or a write is owed.
  void Send(Outgoing out);
  /// On the strand: queues a whole line ('\n' included) and its fds, likewise.
  void SendLine(std::string line, std::vector<UniqueFd> fds);
  bool NotifyFromAnyThread(const nlohmann::json& message);
  /// From any thread: queues `frame` (if any; dropped when closed) behind what
  /// is queued, ends a call when `call_finished`, and writes the queue with a
  /// non-blocking sendmsg unless a write is owed already. What only the strand
  /// can do (wait for POLLOUT, close, resume reading, report the close) is
  /// posted to it. Returns false if the frame was dropped.
  bool SendFromAnyThread(std::optional<OutFrame> frame, bool call_finished);
  /// On the strand: writes the queue. `owner` is the caller that took the
  /// owed write (the POLLOUT wait, or a worker's hand-over); others return
  /// at once while a write is owed.
  void WriteSome(bool owner);
  /// Writes the queue until it is empty or the socket is full. Needs out_mu_.
  Flushed FlushLocked(Error& error);
  /// One sendmsg from the front of out_: a line with fds alone, else as many
  /// fd-less lines as fit in one call. Errors as wire::SendWithFds. Needs out_mu_.
  Result<std::size_t> SendFront();
  /// Appends `frame` to out_ (the write clock starts if the queue was
  /// empty). Needs out_mu_.
  void Enqueue(OutFrame frame);
  /// Marks `sent` bytes from the front of out_ as written (restarting the
  /// write clock); notes the time when the queue empties (the idle clock).
  /// Needs out_mu_.
  void Consume(std::size_t sent);
  /// Waits for POLLOUT on the strand, then WriteSome(owner). Needs out_mu_.
  void ArmWriteWait();
  /// On the strand, after another thread changed the output or the calls in
  /// flight: closes, resumes reading or reports the close as needed.
  void Settle();
  void AfterOutputDrained();
  /// No call in flight, nothing queued, no write owed.
  [[nodiscard]] bool Idle();
  void CloseNow();
  void MaybeReportClosed();

  std::shared_ptr<ConnectionInfo> info_;  // shared with the call contexts
  ConnectionEnv env_;
  asio::strand<asio::io_context::executor_type> strand_;
  // The socket holds the connection's fd; it is declared after the strand it
  // runs on and closed explicitly by CloseNow() (under out_mu_, so no worker
  // writes to a closed, reused fd number).
  asio::local::stream_protocol::socket socket_;
  int fd_ = -1;  // socket_'s fd, for writers off the strand (under out_mu_, while !closed_)
  wire::LineFramer framer_;
  std::vector<char> read_buf_;
  bool reading_ = false;  // an async_wait for input (or a HandleLines) is pending
  bool corked_ = false;   // HandleLines is handling lines: Send only queues
  bool close_reported_ = false;
  // The idle, line and write timeouts: one timer, re-armed by OnDeadline,
  // which re-reads the state (so the paths that change it need not touch it).
  asio::steady_timer deadline_;
  Clock::time_point last_input_;     // the last read that brought bytes
  Clock::time_point partial_since_;  // the line clock of the incomplete line
  Clock::time_point line_taken_;     // OnFrame took up the line being dispatched

  std::mutex out_mu_;
  std::deque<OutFrame> out_;                  // guarded by out_mu_
  std::atomic<std::size_t> queued_bytes_{0};  // changed under out_mu_; read anywhere
  std::size_t inflight_ = 0;                  // blocking calls running; guarded by out_mu_
  Clock::time_point last_output_;             // the queue last emptied; guarded by out_mu_
  Clock::time_point last_sent_;  // the socket last took bytes, or the queue began; out_mu_
  bool write_owed_ = false;      // a POLLOUT wait or a hand-over to the strand is pending; guarded
  // Written on the strand under out_mu_ (read there without it, elsewhere with it).
  bool read_paused_ = false;        // output over the limit: resume when drained
  bool stop_reading_ = false;       // peer EOF or fatal framing error
  bool close_after_flush_ = false;  // oversized frame: reply, then close
  bool closed_ = false;
};

}  // namespace vfiod::rpc
