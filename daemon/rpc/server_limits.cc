#include "rpc/server_limits.h"

namespace vfiod::rpc {

ServerConfig ServerConfigFromLimits(const service::Limits& limits) {
  ServerConfig c;
  c.max_frame_bytes = limits.max_frame_bytes;
  c.max_inflight_per_connection = limits.max_inflight_per_client;
  c.max_output_bytes = limits.max_output_bytes;
  c.max_batch = limits.max_batch;
  c.max_batch_reply_bytes = limits.max_batch_reply_bytes;
  c.worker_threads = limits.worker_threads;
  c.max_connections = limits.max_clients;
  c.max_connections_per_user = limits.max_clients_per_user;
  c.idle_timeout = std::chrono::seconds(limits.idle_timeout);
  c.line_timeout = std::chrono::seconds(limits.line_timeout);
  c.write_timeout = std::chrono::seconds(limits.write_timeout);
  return c;
}

}  // namespace vfiod::rpc
