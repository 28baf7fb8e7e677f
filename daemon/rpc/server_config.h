// Tunables of the JSON-RPC server (filled from the daemon's config file).
#pragma once

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
  /// Output queued for one connection. Past it the server stops reading that
  /// connection (back-pressure) and drops its progress notifications.
  std::size_t max_output_bytes = 8 << 20;
  /// Threads running handlers marked blocking, and close hooks.
  std::size_t worker_threads = 4;
  /// Connections open at once; more are accepted and closed straight away.
  std::size_t max_connections = 1024;
};

}  // namespace vfiod::rpc
