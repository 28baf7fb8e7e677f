// The config file's limits as the JSON-RPC server takes them. main.cc builds
// the server from this, and tests/rpc/limits_config_test.cc checks that every
// key of the limits section reaches the component that enforces it.
#pragma once

#include "rpc/server_config.h"
#include "service/config.h"

namespace vfiod::rpc {

/// The server's part of `limits` (the others, map_chunk_bytes and
/// max_regions, are read by the service from its own Config).
[[nodiscard]] ServerConfig ServerConfigFromLimits(const service::Limits& limits);

}  // namespace vfiod::rpc
