// Connection state reports: what a connection waits for, for the report of a
// client that waits for an answer (Server::DescribeConnections).
#include <sys/ioctl.h>

#include <boost/asio/post.hpp>
#include <string>

#include "rpc/connection.h"

namespace vfiod::rpc {

void Connection::Describe(std::function<void(std::string)> done) {
  asio::post(strand_, [self = shared_from_this(), done = std::move(done)] {
    std::string text = "connection " + std::to_string(self->info_->id) + " uid " +
                       std::to_string(self->info_->peer.uid) + " fd " + std::to_string(self->fd_) +
                       ":";
    auto flag = [&text](const char* name, bool on) {
      if (on) {
        text += ' ';
        text += name;
      }
    };
    {
      std::lock_guard lock(self->out_mu_);
      text += " inflight " + std::to_string(self->inflight_) + ", queued " +
              std::to_string(self->out_.size()) + " lines " +
              std::to_string(self->queued_bytes_.load()) + " bytes;";
      flag("write_owed", self->write_owed_);
      flag("read_paused", self->read_paused_);
      flag("stop_reading", self->stop_reading_);
      flag("close_after_flush", self->close_after_flush_);
      flag("closed", self->closed_);
    }
    int unread = 0;
    if (!self->closed_ && ::ioctl(self->fd_, FIONREAD, &unread) == 0) {
      text += " unread " + std::to_string(unread) + " bytes;";
    }
    flag("reading", self->reading_);
    flag("close_reported", self->close_reported_);
    flag("holds_lines", self->framer_.has_frame());
    flag("partial_line", self->framer_.partial_bytes() > 0);
    flag("overflowed", self->framer_.overflowed());
    done(std::move(text));
  });
}

}  // namespace vfiod::rpc
