// The limit for an RPC round trip: two processes ping-ponging lines of the
// same sizes as a JSON-RPC ping request and reply over a unix stream socket,
// with no parsing and no dispatch.
#pragma once

#include <vector>

#include "proto/result.h"

namespace vfiod::bench {

/// Forks an echo process and times `count` round trips, in seconds each.
/// Errors: errno of socketpair/fork/read/write; EPIPE when the echo process
/// goes away.
[[nodiscard]] Result<std::vector<double>> RawPingPong(int count);

}  // namespace vfiod::bench
