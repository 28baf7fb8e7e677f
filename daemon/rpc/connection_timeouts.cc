// Connection timeouts: the idle timeout and the incomplete-line timeout.
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
//  - Neither applies to a client that is slow to read its replies: while
//    output is queued the connection is not idle and its line clock stops.
// On expiry one kBusy line naming the limit is written if the socket takes
// it at once, and the connection closes.
//
// One timer on the strand. Nothing else re-arms it except a read that starts
// a new incomplete line (its deadline may be earlier than the timer's):
// OnDeadline re-reads the state and sets the timer to the next deadline, or
// polls again after the shorter timeout while neither applies.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <boost/asio/bind_executor.hpp>

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
  if (closed_ || (env_.config.idle_timeout.count() == 0 && env_.config.line_timeout.count() == 0)) {
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

std::optional<Connection::Clock::time_point> Connection::NextDeadline() {
  const ServerConfig& c = env_.config;
  bool reading = !read_paused_ && !stop_reading_;
  if (c.line_timeout.count() > 0 && reading && framer_.partial_bytes() > 0) {
    return partial_since_ + c.line_timeout;
  }
  if (c.idle_timeout.count() == 0 || stop_reading_ || framer_.partial_bytes() > 0 ||
      framer_.has_frame()) {
    return std::nullopt;
  }
  std::lock_guard lock(out_mu_);
  if (inflight_ != 0 || !out_.empty() || write_owed_) {
    return std::nullopt;
  }
  return std::max(last_input_, last_output_) + c.idle_timeout;
}

void Connection::OnDeadline() {
  Clock::time_point now = Clock::now();
  std::optional<Clock::time_point> due = NextDeadline();
  if (due && *due <= now) {
    bool line = framer_.partial_bytes() > 0;
    auto limit = line ? env_.config.line_timeout : env_.config.idle_timeout;
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(limit).count();
    std::string detail =
        line ? "an incomplete line waited longer than " + std::to_string(ms) +
                   " ms; closing the connection"
             : "no request for " + std::to_string(ms) + " ms; closing the idle connection";
    spdlog::info("rpc: connection {} (uid {}): {}", info_->id, info_->peer.uid, detail);
    CloseForLimit(line ? "line_timeout" : "idle_timeout", std::move(detail));
    return;
  }
  ArmNextDeadline();
}

void Connection::ArmNextDeadline() {
  std::optional<Clock::time_point> due = NextDeadline();
  if (!due) {
    // Busy (a call in flight, output queued): look again after the shorter timeout.
    auto idle =
        env_.config.idle_timeout.count() > 0 ? env_.config.idle_timeout : env_.config.line_timeout;
    auto line = env_.config.line_timeout.count() > 0 ? env_.config.line_timeout : idle;
    due = Clock::now() + std::min(idle, line);
  }
  ArmDeadline(*due);
}

void Connection::CloseForLimit(std::string_view limit, std::string detail) {
  Send({wire::MakeErrorResponse(nullptr, wire::MakeLimitError(limit, std::move(detail))),
        {},
        nullptr});
  CloseNow();
}

}  // namespace vfiod::rpc
