// Validation of one JSON-RPC 2.0 request object (pure: no I/O, no state).
#pragma once

#include <expected>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "proto/jsonrpc.h"

namespace vfiod::rpc {

struct Request {
  std::optional<nlohmann::json> id;  ///< nullopt: a notification, never answered
  std::string method;
  nlohmann::json params;  ///< object or array; an empty object when absent
};

/// Why an element is not a request, and the id to answer with (null when the
/// id itself is missing or unusable). Invalid requests are always answered.
struct RequestError {
  wire::RpcError error;
  nlohmann::json id;
};

/// Checks `j` against JSON-RPC 2.0: an object with "jsonrpc": "2.0", a string
/// "method", optional "params" (object or array) and optional "id" (string,
/// integer or null). Anything else is kInvalidRequest.
[[nodiscard]] std::expected<Request, RequestError> ParseRequest(const nlohmann::json& j);
/// As above, but moves params and id out of `j` (left unspecified) instead of
/// copying them: the server's path, which owns the parsed line.
[[nodiscard]] std::expected<Request, RequestError> ParseRequest(nlohmann::json&& j);

}  // namespace vfiod::rpc
