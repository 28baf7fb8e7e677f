// Connection input and closing: reading and framing input, end of input,
// closing and reporting the close.
#include "rpc/connection.h"

#include <poll.h>
#include <spdlog/fmt/fmt.h>
#include <spdlog/spdlog.h>

#include <boost/asio/bind_executor.hpp>
#include <boost/asio/post.hpp>

#include "journal/sink.h"
#include "journal/user_budget.h"
#include "proto/fd_passing.h"
#include "proto/jsonrpc.h"

namespace vfiod::rpc {

namespace {
constexpr std::size_t kReadChunk = std::size_t{64} * 1024;
}  // namespace

Connection::Connection(asio::io_context& io, UniqueFd fd, std::shared_ptr<ConnectionInfo> info,
                       ConnectionEnv env)
    : info_(std::move(info)),
      env_(std::move(env)),
      strand_(asio::make_strand(io)),
      socket_(strand_),
      framer_(env_.config.max_frame_bytes),
      read_buf_(kReadChunk),
      deadline_(strand_) {
  // On failure the socket stays closed, `fd` closes here, and Start() reports
  // the connection closed at once.
  boost::system::error_code ec;
  socket_.assign(asio::local::stream_protocol(), fd.get(), ec);
  if (ec) {
    spdlog::error("rpc: connection {}: cannot adopt socket: {}", info_->id, ec.message());
    return;
  }
  fd_ = fd.release();  // the socket owns it now
}

Connection::~Connection() { spdlog::debug("rpc: connection {} freed", info_->id); }

void Connection::Start() {
  std::weak_ptr<Connection> weak = weak_from_this();
  info_->notify = [weak](const nlohmann::json& message) {
    auto self = weak.lock();
    return self && self->NotifyFromAnyThread(message);
  };
  asio::post(strand_, [self = shared_from_this()] {
    if (self->socket_.is_open()) {
      self->last_input_ = Clock::now();
      self->ArmNextDeadline();
      self->WaitReadable();
    } else {
      self->CloseNow();
    }
  });
}

void Connection::Close() {
  asio::post(strand_, [self = shared_from_this()] { self->CloseNow(); });
}

bool Connection::OutputFull() const { return queued_bytes_.load() >= env_.config.max_output_bytes; }

// The analyzer follows asio's handler allocation (its recycling allocator's
// ptr, handler_alloc_helpers.hpp) into executor_op and reports the operation
// leaked; asio frees it when the handler runs or the strand is destroyed.
// NOLINTBEGIN(clang-analyzer-cplusplus.NewDeleteLeaks)
void Connection::WaitReadable() {
  if (closed_ || reading_ || stop_reading_) {
    return;
  }
  {
    // Under the lock: a worker that drains the queue sees read_paused_ and
    // hands the resumption back (SendFromAnyThread).
    std::lock_guard lock(out_mu_);
    if (OutputFull()) {
      read_paused_ = true;  // AfterOutputDrained resumes
      return;
    }
  }
  reading_ = true;
  if (framer_.has_frame() || framer_.overflowed()) {
    // Lines held back by back-pressure go before any new input.
    asio::post(strand_, [self = shared_from_this()] {
      self->reading_ = false;
      if (!self->closed_) {
        self->HandleLines();
      }
    });
    return;
  }
  socket_.async_wait(asio::socket_base::wait_read,
                     asio::bind_executor(strand_, [self = shared_from_this()](auto ec) {
                       self->reading_ = false;
                       if (!ec && !self->closed_) {
                         self->ReadSome();
                       }
                     }));
}

// NOLINTEND(clang-analyzer-cplusplus.NewDeleteLeaks)

void Connection::ReadSome() {
  auto got = wire::RecvWithFds(fd_, read_buf_);
  if (!got) {
    if (got.error().code == EAGAIN) {
      WaitReadable();
    } else {
      journal::LogFor(info_->peer.uid, journal::Level::kInfo, "rpc: connection {}: {}", info_->id,
                      got.error().message());
      CloseNow();
    }
    return;
  }
  if (got->bytes == 0) {
    OnPeerEof();
    return;
  }
  if (got->fds_truncated) {
    journal::LogFor(info_->peer.uid, journal::Level::kWarning,
                    "rpc: connection {}: fd control data truncated ({} fds arrived, closed)",
                    info_->id, got->fds.size());
    got->fds.clear();
  }
  bool had_partial = framer_.partial_bytes() > 0;
  framer_.Feed({read_buf_.data(), got->bytes}, std::move(got->fds), got->fds_truncated);
  NoteInput(had_partial);
  HandleLines();
}

void Connection::HandleLines() {
  // The replies of the lines handled here leave together (one sendmsg when
  // they carry no fds). Output is checked after every line, so a read full of
  // lines with large replies queues at most max_output_bytes plus one reply;
  // the lines left wait in the framer until the client has read.
  corked_ = true;
  while (framer_.has_frame() && !closed_ && !OutputFull()) {
    OnFrame(framer_.Pop());
  }
  corked_ = false;
  WriteSome(/*owner=*/false);
  if (framer_.overflowed() && !framer_.has_frame() && !closed_ && !stop_reading_) {
    OnOversizedLine();
    return;
  }
  WaitReadable();
}

void Connection::OnOversizedLine() {
  journal::LogFor(info_->peer.uid, journal::Level::kWarning,
                  "rpc: connection {}: frame over {} bytes, closing", info_->id,
                  env_.config.max_frame_bytes);
  {
    std::lock_guard lock(out_mu_);
    stop_reading_ = true;
    close_after_flush_ = true;
  }
  Send({wire::MakeErrorResponse(
            nullptr,
            wire::MakeError(wire::kFrameTooLarge, "line longer than " +
                                                      std::to_string(env_.config.max_frame_bytes) +
                                                      " bytes; closing the connection")),
        {},
        nullptr});
}

void Connection::OnPeerEof() {
  // EOF on read is either a full close (the peer is gone: poll reports HUP)
  // or a half close (shutdown(SHUT_WR): it still waits for its replies).
  pollfd p{fd_, POLLOUT, 0};
  bool gone = ::poll(&p, 1, 0) == 1 && (p.revents & (POLLHUP | POLLERR)) != 0;
  {
    std::lock_guard lock(out_mu_);
    stop_reading_ = true;
  }
  if (gone || Idle()) {
    CloseNow();
  }
}

bool Connection::Idle() {
  std::lock_guard lock(out_mu_);
  return inflight_ == 0 && out_.empty() && !write_owed_;
}

void Connection::CloseNow() {
  if (closed_) {
    return;
  }
  {
    std::lock_guard lock(out_mu_);
    closed_ = true;
    info_->closed.store(true, std::memory_order_release);
    boost::system::error_code ignored;
    socket_.close(ignored);  // aborts the pending waits; their handlers see closed_
    out_.clear();
    queued_bytes_ = 0;
  }
  deadline_.cancel();
  framer_ = wire::LineFramer(env_.config.max_frame_bytes);  // closes fds of a partial line
  journal::Emit({.kind = journal::Kind::kConnectionClosed,
                 .message = fmt::format("rpc: connection {} closed (uid {}, pid {})", info_->id,
                                        info_->peer.uid, info_->peer.pid),
                 .uid = info_->peer.uid,
                 .pid = info_->peer.pid,
                 .connection = info_->id});
  MaybeReportClosed();
}

void Connection::MaybeReportClosed() {
  if (!closed_ || close_reported_) {
    return;
  }
  {
    std::lock_guard lock(out_mu_);
    if (inflight_ != 0) {
      return;  // the last call to end hands this back (SendFromAnyThread or Finish)
    }
  }
  close_reported_ = true;
  if (env_.on_closed) {
    env_.on_closed(info_);
  }
}

}  // namespace vfiod::rpc
