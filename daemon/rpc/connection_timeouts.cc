// Connection timeouts: the idle, incomplete-line and write timeouts.
//
// The rules (ServerConfig says the same):
//  - line timeout: while the server is reading the connection (not paused by
//    back-pressure, no end of input seen), an incomplete line older than
//    line_timeout closes it. The clock starts with the read that brought the
//    line's first byte, or when reading resumed after back-pressure. Calls in
//    flight do not stop it: they do not wait for that line.
//  - idle timeout: a connection with no call in flight, nothing queued or
//    owed to the socket, no line held (complete or not) and nothing received
//    or sent (queue emptied) for idle_timeout is closed.
//  - write timeout: a connection whose queued output the socket has taken no
//    byte of for write_timeout (the queue began, or its last byte went out,
//    that long ago) is closed: a client that never reads its replies holds
//    at most max_output_bytes of the daemon's memory, and only that long.
//  - The idle and line timeouts do not apply to a client slow to read its
//    replies: while output is queued the connection is not idle and its line
//    clock stops (reading is paused past max_output_bytes).
// On the idle or line timeout one kBusy line naming the limit is written if
// the socket takes it at once, and the connection closes; on the write
// timeout it closes at once (the socket takes nothing).
//
// One timer on the strand. Nothing else re-arms it except a read that starts
// a new incomplete line (its deadline may be earlier than the timer's):
// OnDeadline re-reads the state and sets the timer to the next deadline, or
// polls again after the shorter timeout while neither applies.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <boost/asio/bind_executor.hpp>

#include "journal/user_budget.h"
#include "proto/jsonrpc.h"
#include "rpc/connection.h"

namespace vfiod::rpc {

void Connection::NoteInput(bool had_partial) {
  Clock::time_point now = Clock::now();
  last_input_ = now;
  // ReadSome runs only once the framer's complete lines were handled, so a
  // frame now means a line ended in this read: what is left started here too.
  bool new_partial = !had_partial || framer_.has_frame();
  if (framer_.partial_bytes() > 0 && new_partial) {
    partial_since_ = now;
    if (env_.config.line_timeout.count() > 0) {
      ArmDeadline(now + env_.config.line_timeout);
    }
  }
}

void Connection::ArmDeadline(Clock::time_point when) {
  const ServerConfig& c = env_.config;
  if (closed_ || (c.idle_timeout.count() == 0 && c.line_timeout.count() == 0 &&
                  c.write_timeout.count() == 0)) {
    return;
  }
  if (when >= deadline_.expiry() && deadline_.expiry() > Clock::now()) {
    return;  // armed already, for an earlier time: OnDeadline re-reads the state then
  }
  deadline_.expires_at(std::min(when, Clock::now() + std::chrono::hours(24)));
  deadline_.async_wait(asio::bind_executor(strand_, [self = shared_from_this()](auto ec) {
    if (!ec && !self->closed_) {
      self->OnDeadline();
    }
  }));
}

std::optional<Connection::Due> Connection::NextDeadline() {
  const ServerConfig& c = env_.config;
  std::optional<Due> due;
  auto consider = [&due](Clock::time_point when, std::string_view limit) {
    if (!due || when < due->when) {
      due = Due{when, limit};
    }
  };
  bool reading = !read_paused_ && !stop_reading_;
  if (c.line_timeout.count() > 0 && reading && framer_.partial_bytes() > 0) {
    consider(partial_since_ + c.line_timeout, "line_timeout");
  }
  std::lock_guard lock(out_mu_);
  if (c.write_timeout.count() > 0 && !out_.empty()) {
    consider(last_sent_ + c.write_timeout, "write_timeout");
  }
  bool idle = !stop_reading_ && framer_.partial_bytes() == 0 && !framer_.has_frame() &&
              inflight_ == 0 && out_.empty() && !write_owed_;
  if (c.idle_timeout.count() > 0 && idle) {
    consider(std::max(last_input_, last_output_) + c.idle_timeout, "idle_timeout");
  }
  return due;
}

Connection::Clock::duration Connection::ShortestTimeout() const {
  Clock::duration shortest = std::chrono::hours(24);
  for (auto t : {env_.config.idle_timeout, env_.config.line_timeout, env_.config.write_timeout}) {
    if (t.count() > 0) {
      shortest = std::min<Clock::duration>(shortest, t);
    }
  }
  return shortest;
}

void Connection::OnDeadline() {
  Clock::time_point now = Clock::now();
  std::optional<Due> due = NextDeadline();
  if (!due || due->when > now) {
    ArmNextDeadline();
    return;
  }
  const ServerConfig& c = env_.config;
  if (due->limit == "write_timeout") {
    // The socket takes nothing: no error line could reach the client.
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(c.write_timeout).count();
    journal::LogFor(info_->peer.uid, journal::Level::kInfo,
                    "rpc: connection {} (uid {}): its replies waited {} ms unread; closing it",
                    info_->id, info_->peer.uid, ms);
    CloseNow();
    return;
  }
  bool line = due->limit == "line_timeout";
  auto ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(line ? c.line_timeout : c.idle_timeout)
          .count();
  std::string detail =
      line ? "an incomplete line waited longer than " + std::to_string(ms) +
                 " ms; closing the connection"
           : "no request for " + std::to_string(ms) + " ms; closing the idle connection";
  journal::LogFor(info_->peer.uid, journal::Level::kInfo, "rpc: connection {} (uid {}): {}",
                  info_->id, info_->peer.uid, detail);
  CloseForLimit(due->limit, std::move(detail));
}

void Connection::ArmNextDeadline() {
  std::optional<Due> due = NextDeadline();
  // None applies (a call in flight, its reply not yet queued): look again later.
  ArmDeadline(due ? due->when : Clock::now() + ShortestTimeout());
}

void Connection::CloseForLimit(std::string_view limit, std::string detail) {
  Send({wire::MakeErrorResponse(nullptr, wire::MakeLimitError(limit, std::move(detail))),
        {},
        nullptr});
  CloseNow();
}

}  // namespace vfiod::rpc
