// Connection I/O: reading and framing input, writing queued output, closing.
#include "rpc/connection.h"

#include <poll.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/post.hpp>

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
      read_buf_(kReadChunk) {
  // On failure the socket stays closed, `fd` closes here, and Start() reports
  // the connection closed at once.
  boost::system::error_code ec;
  socket_.assign(asio::local::stream_protocol(), fd.get(), ec);
  if (ec) {
    spdlog::error("rpc: connection {}: cannot adopt socket: {}", info_->id, ec.message());
    return;
  }
  (void)fd.release();  // the socket owns it now
}

Connection::~Connection() { spdlog::debug("rpc: connection {} freed", info_->id); }

void Connection::Start() {
  std::weak_ptr<Connection> weak = weak_from_this();
  info_->notify = [weak](nlohmann::json message) {
    auto self = weak.lock();
    return self && self->NotifyFromAnyThread(std::move(message));
  };
  asio::post(strand_, [self = shared_from_this()] {
    if (self->socket_.is_open()) {
      self->WaitReadable();
    } else {
      self->CloseNow();
    }
  });
}

void Connection::Close() {
  asio::post(strand_, [self = shared_from_this()] { self->CloseNow(); });
}

void Connection::WaitReadable() {
  if (closed_ || reading_ || stop_reading_) {
    return;
  }
  if (queued_bytes_.load() >= env_.config.max_output_bytes) {
    read_paused_ = true;  // AfterOutputDrained resumes
    return;
  }
  reading_ = true;
  socket_.async_wait(asio::socket_base::wait_read,
                     asio::bind_executor(strand_, [self = shared_from_this()](auto ec) {
                       self->reading_ = false;
                       if (!ec && !self->closed_) {
                         self->ReadSome();
                       }
                     }));
}

void Connection::ReadSome() {
  auto got = wire::RecvWithFds(socket_.native_handle(), read_buf_);
  if (!got) {
    if (got.error().code == EAGAIN) {
      WaitReadable();
    } else {
      spdlog::info("rpc: connection {}: {}", info_->id, got.error().message());
      CloseNow();
    }
    return;
  }
  if (got->bytes == 0) {
    OnPeerEof();
    return;
  }
  if (got->fds_truncated) {
    spdlog::warn("rpc: connection {}: fd control data truncated ({} fds arrived, closed)",
                 info_->id, got->fds.size());
    got->fds.clear();
  }
  framer_.Feed({read_buf_.data(), got->bytes}, std::move(got->fds), got->fds_truncated);
  // The replies of the lines this read brought leave together (one sendmsg
  // when they carry no fds) once every line was handled.
  corked_ = true;
  while (framer_.has_frame() && !closed_) {
    OnFrame(framer_.Pop());
  }
  corked_ = false;
  if (!writing_ && !out_.empty()) {
    WriteSome();
  }
  if (framer_.overflowed() && !closed_) {
    spdlog::warn("rpc: connection {}: frame over {} bytes, closing", info_->id,
                 env_.config.max_frame_bytes);
    stop_reading_ = true;
    close_after_flush_ = true;
    Send({wire::MakeErrorResponse(
              nullptr,
              wire::MakeError(wire::kFrameTooLarge,
                              "line longer than " + std::to_string(env_.config.max_frame_bytes) +
                                  " bytes; closing the connection")),
          {}});
    return;
  }
  WaitReadable();
}

void Connection::OnPeerEof() {
  // EOF on read is either a full close (the peer is gone: poll reports HUP)
  // or a half close (shutdown(SHUT_WR): it still waits for its replies).
  pollfd p{socket_.native_handle(), POLLOUT, 0};
  bool gone = ::poll(&p, 1, 0) == 1 && (p.revents & (POLLHUP | POLLERR)) != 0;
  stop_reading_ = true;
  if (gone || (inflight_ == 0 && out_.empty())) {
    CloseNow();
  }
}

bool Connection::NotifyFromAnyThread(nlohmann::json message) {
  if (info_->closed.load() || queued_bytes_.load() >= env_.config.max_output_bytes) {
    return false;
  }
  asio::post(strand_, [self = shared_from_this(), m = std::move(message)]() mutable {
    if (self->queued_bytes_.load() < self->env_.config.max_output_bytes) {
      self->Send({std::move(m), {}});
    }
  });
  return true;
}

void Connection::Send(Outgoing out) {
  if (closed_) {
    return;  // the fds in `out` close here
  }
  OutFrame frame{wire::ToLine(out.message), std::move(out.fds), 0};
  queued_bytes_ += frame.bytes.size();
  out_.push_back(std::move(frame));
  if (!writing_ && !corked_) {
    WriteSome();
  }
}

Result<std::size_t> Connection::SendFront() {
  OutFrame& f = out_.front();
  if (!f.fds.empty()) {
    // Its fds travel with its first byte, in a sendmsg with no other line.
    std::vector<int> raw;
    raw.reserve(f.fds.size());
    for (const UniqueFd& fd : f.fds) {
      raw.push_back(fd.get());
    }
    auto sent = wire::SendWithFds(socket_.native_handle(), f.bytes, raw);
    if (sent) {
      f.fds.clear();  // the peer holds its own copies once any byte went out
    }
    return sent;
  }
  std::span<const char> parts[wire::kMaxSendParts];
  std::size_t count = 0;
  for (const OutFrame& next : out_) {
    if (count == wire::kMaxSendParts || (count > 0 && !next.fds.empty())) {
      break;
    }
    parts[count++] = std::span<const char>(next.bytes).subspan(next.sent);
  }
  return wire::SendParts(socket_.native_handle(), {parts, count});
}

void Connection::Consume(std::size_t sent) {
  while (sent > 0) {
    OutFrame& f = out_.front();
    std::size_t part = std::min(sent, f.bytes.size() - f.sent);
    f.sent += part;
    sent -= part;
    if (f.sent == f.bytes.size()) {
      queued_bytes_ -= f.bytes.size();
      out_.pop_front();
    }
  }
}

void Connection::WriteSome() {
  writing_ = false;
  while (!out_.empty() && !closed_) {
    auto sent = SendFront();
    if (!sent) {
      if (sent.error().code == EAGAIN) {
        writing_ = true;
        socket_.async_wait(asio::socket_base::wait_write,
                           asio::bind_executor(strand_, [self = shared_from_this()](auto ec) {
                             if (!ec && !self->closed_) {
                               self->WriteSome();
                             }
                           }));
        return;
      }
      spdlog::info("rpc: connection {}: {}", info_->id, sent.error().message());
      CloseNow();
      return;
    }
    Consume(*sent);
  }
  AfterOutputDrained();
}

void Connection::AfterOutputDrained() {
  if (closed_) {
    return;
  }
  if (close_after_flush_ || (stop_reading_ && inflight_ == 0)) {
    CloseNow();
    return;
  }
  if (read_paused_) {
    read_paused_ = false;
    WaitReadable();
  }
}

void Connection::CloseNow() {
  if (closed_) {
    return;
  }
  closed_ = true;
  info_->closed.store(true, std::memory_order_release);
  boost::system::error_code ignored;
  socket_.close(ignored);  // aborts the pending waits; their handlers see closed_
  out_.clear();
  queued_bytes_ = 0;
  framer_ = wire::LineFramer(env_.config.max_frame_bytes);  // closes fds of a partial line
  spdlog::info("rpc: connection {} closed (uid {}, pid {})", info_->id, info_->peer.uid,
               info_->peer.pid);
  MaybeReportClosed();
}

void Connection::MaybeReportClosed() {
  if (closed_ && inflight_ == 0 && !close_reported_) {
    close_reported_ = true;
    if (env_.on_closed) {
      env_.on_closed(info_);
    }
  }
}

}  // namespace vfiod::rpc
