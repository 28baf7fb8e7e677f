// Connection output: the reply queue, written from the strand or directly from
// the worker that finished a blocking call, under out_mu_.
//
// Who writes: whoever queues a line writes the queue itself with non-blocking
// sendmsg calls, unless a write is owed (write_owed_): then the owner (a
// POLLOUT wait armed on the strand, or a hand-over a worker posted to the
// strand after EAGAIN) writes it later, in order. The strand alone waits for
// POLLOUT, closes, resumes reading and reports the close; a worker that
// changes what those depend on posts Settle() or the hand-over to it.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/post.hpp>

#include "journal/user_budget.h"
#include "proto/fd_passing.h"
#include "proto/jsonrpc.h"
#include "rpc/connection.h"

namespace vfiod::rpc {

bool Connection::NotifyFromAnyThread(const nlohmann::json& message) {
  if (info_->closed.load(std::memory_order_acquire) ||
      queued_bytes_.load() >= env_.config.max_output_bytes) {
    return false;
  }
  return SendFromAnyThread(OutFrame{wire::ToLine(message), {}, 0}, /*call_finished=*/false);
}

std::string Connection::Outgoing::Line(bool newline) const {
  if (result_text) {
    return wire::ToLine(message, *result_text, newline);
  }
  std::string line = wire::ToLine(message);
  if (!newline) {
    line.pop_back();
  }
  return line;
}

void Connection::Send(Outgoing out) {
  if (closed_) {
    return;  // the fds in `out` close here
  }
  SendLine(out.Line(), std::move(out.fds));
}

void Connection::SendLine(std::string line, std::vector<UniqueFd> fds) {
  if (closed_) {
    return;
  }
  OutFrame frame{std::move(line), std::move(fds), 0};
  {
    std::lock_guard lock(out_mu_);
    Enqueue(std::move(frame));
  }
  if (!corked_) {
    WriteSome(/*owner=*/false);
  }
}

bool Connection::SendFromAnyThread(std::optional<OutFrame> frame, bool call_finished) {
  bool queued = false;
  bool settle = false;
  Flushed flushed = Flushed::kDrained;
  Error error;
  {
    std::lock_guard lock(out_mu_);
    if (call_finished) {
      --inflight_;
    }
    if (closed_) {
      settle = call_finished && inflight_ == 0;  // the close waits for this call to end
    } else {
      if (frame) {
        Enqueue(std::move(*frame));
        queued = true;
      }
      if (!write_owed_) {
        flushed = FlushLocked(error);
        // Blocked or failed: the strand takes the write over (and closes on failure).
        write_owed_ = flushed != Flushed::kDrained;
        settle = flushed == Flushed::kDrained &&
                 (read_paused_ || close_after_flush_ || (stop_reading_ && inflight_ == 0));
      }
    }
  }
  // In the common case (the reply went out whole) nothing is posted: the
  // strand, and the io thread running it, stay asleep.
  if (flushed == Flushed::kBlocked) {
    asio::post(strand_, [self = shared_from_this()] { self->WriteSome(/*owner=*/true); });
  } else if (flushed == Flushed::kFailed) {
    asio::post(strand_, [self = shared_from_this(), message = error.message()] {
      journal::LogFor(self->info_->peer.uid, journal::Level::kInfo, "rpc: connection {}: {}",
                      self->info_->id, message);
      self->CloseNow();
    });
  } else if (settle) {
    asio::post(strand_, [self = shared_from_this()] { self->Settle(); });
  }
  return queued;
}

void Connection::Enqueue(OutFrame frame) {
  if (out_.empty()) {
    last_sent_ = Clock::now();  // the write clock starts with the queue
  }
  queued_bytes_ += frame.bytes.size();
  out_.push_back(std::move(frame));
}

void Connection::WriteSome(bool owner) {
  Flushed flushed = Flushed::kDrained;
  Error error;
  std::optional<Clock::time_point> write_due;
  {
    std::lock_guard lock(out_mu_);
    if (closed_ || (write_owed_ && !owner)) {
      return;  // the owner writes, and settles once drained
    }
    flushed = FlushLocked(error);
    write_owed_ = flushed == Flushed::kBlocked;
    if (write_owed_) {
      ArmWriteWait();
      if (env_.config.write_timeout.count() > 0) {
        write_due = last_sent_ + env_.config.write_timeout;
      }
    }
  }
  if (write_due) {
    ArmDeadline(*write_due);  // the timer may be set for a later idle deadline
  }
  if (flushed == Flushed::kFailed) {
    journal::LogFor(info_->peer.uid, journal::Level::kInfo, "rpc: connection {}: {}", info_->id,
                    error.message());
    CloseNow();
  } else if (flushed == Flushed::kDrained) {
    AfterOutputDrained();
  }
}

Connection::Flushed Connection::FlushLocked(Error& error) {
  while (!out_.empty()) {
    auto sent = SendFront();
    if (!sent) {
      if (sent.error().code == EAGAIN) {
        return Flushed::kBlocked;
      }
      error = sent.error();
      return Flushed::kFailed;
    }
    Consume(*sent);
  }
  return Flushed::kDrained;
}

void Connection::ArmWriteWait() {
  socket_.async_wait(asio::socket_base::wait_write,
                     asio::bind_executor(strand_, [self = shared_from_this()](auto ec) {
                       if (!ec && !self->closed_) {
                         self->WriteSome(/*owner=*/true);
                       }
                     }));
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
    auto sent = wire::SendWithFds(fd_, f.bytes, raw);
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
  return wire::SendParts(fd_, {parts, count});
}

void Connection::Consume(std::size_t sent) {
  if (sent > 0) {
    last_sent_ = Clock::now();
  }
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
  if (out_.empty()) {
    last_output_ = Clock::now();
  }
}

void Connection::Settle() {
  if (closed_) {
    MaybeReportClosed();
  } else {
    WriteSome(/*owner=*/false);  // drained: AfterOutputDrained; owed: the owner settles
  }
}

void Connection::AfterOutputDrained() {
  if (closed_) {
    return;
  }
  if (close_after_flush_ || (stop_reading_ && Idle())) {
    CloseNow();
    return;
  }
  if (read_paused_) {
    {
      std::lock_guard lock(out_mu_);
      read_paused_ = false;
    }
    partial_since_ = Clock::now();  // the line clock stopped while paused
    WaitReadable();
  }
}

}  // namespace vfiod::rpc
