// Tunables of the JSON-RPC server (filled from the daemon's config file by
// ServerConfigFromLimits, server_limits.h).
#pragma once

#include <chrono>
#include <cstddef>

namespace vfiod::rpc {

struct ServerConfig {
  /// Longest accepted line. A longer one is answered with kFrameTooLarge (id
  /// null) and the connection is closed after that reply: without a complete
  /// line there is no safe place to resynchronise a JSON stream, and a peer
  /// sending megabytes without a newline is broken or hostile.
  std::size_t max_frame_bytes = 1 << 20;
  /// Requests (and notifications) of one connection being handled at once;
  /// the surplus is answered kBusy at once and costs the others nothing.
  std::size_t max_inflight_per_connection = 32;
  /// Output queued for one connection. Once the queue passes it (checked
  /// after every line, not only between reads) the server handles no further
  /// line of that connection and stops reading it until the queue has
  /// drained, and drops its progress notifications. A client that never
  /// reads makes the server hold at most this plus one reply line.
  std::size_t max_output_bytes = 8 << 20;
  /// Elements of one batch array; a longer batch is refused whole (one
  /// kInvalidRequest reply, id null) and none of it runs.
  std::size_t max_batch = 256;
  /// Reply bytes of one batch: once its elements' replies (in array order, as
  /// they are produced) reach it, the elements not yet started are not run
  /// and are answered kBusy with data.limit "max_batch_reply_bytes".
  std::size_t max_batch_reply_bytes = 1 << 20;
  /// Threads running handlers marked blocking (close hooks have their own).
  std::size_t worker_threads = 4;
  /// Blocking calls of one user (peer uid) running at once, over all its
  /// connections; the rest wait in its queue while other users take turns.
  /// 0: worker_threads - 1, so one user never holds every worker.
  std::size_t blocking_per_user = 0;
  /// Connections open at once for everyone but root. Past it a connection is
  /// refused (one kBusy line, then closed) unless its peer is uid 0, which may
  /// use `root_reserved_connections` more.
  std::size_t max_connections = 1024;
  /// Connections open at once per non-root uid (root is not limited).
  std::size_t max_connections_per_user = 16;
  /// Slots beyond max_connections only uid 0 may use, so root can always
  /// connect (to look and to clean up) whatever other users hold.
  std::size_t root_reserved_connections = 4;
  /// A connection with no call in flight, nothing queued or unsent, no
  /// partial line and nothing received or sent for this long is closed
  /// (after one kBusy line, data.limit "idle_timeout"). Zero: never.
  std::chrono::milliseconds idle_timeout{std::chrono::seconds(300)};
  /// A connection holding an incomplete line this long while the server is
  /// reading it is closed (after one kBusy line, data.limit "line_timeout").
  /// The clock starts with the read that brought the line's first byte, or
  /// when reading resumed after back-pressure. Zero: never.
  std::chrono::milliseconds line_timeout{std::chrono::seconds(10)};
  /// A connection whose queued output the socket has taken no byte of for
  /// this long (the client stopped reading its replies) is closed, so a
  /// client that never reads cannot hold max_output_bytes of the daemon's
  /// memory for ever. The clock starts when the queue stops being empty and
  /// restarts with every byte the socket takes. Zero: never.
  std::chrono::milliseconds write_timeout{std::chrono::seconds(60)};

  friend bool operator==(const ServerConfig&, const ServerConfig&) = default;
};

}  // namespace vfiod::rpc
