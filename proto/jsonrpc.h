// JSON-RPC 2.0 message shapes shared by the daemon and its clients.
//
// Framing: one compact JSON value per line, terminated by '\n' (see framing.h).
// File descriptors travel beside a line (see fd_passing.h); inside the JSON a
// message refers to the n-th fd it carries with the object {"fd": n}.
#pragma once

#include <cstddef>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "proto/errors.h"
#include "proto/result.h"

namespace vfiod::wire {

inline constexpr const char* kVersion = "2.0";

/// A JSON-RPC error object: what a handler returns on failure and what a
/// client receives. `data` is null when absent.
struct RpcError {
  int code = kInternalError;
  std::string message;
  nlohmann::json data;

  /// {"code", "message"[, "data"]}.
  [[nodiscard]] nlohmann::json ToJson() const;
  /// "message (code): data.detail", for logs and CLI output.
  [[nodiscard]] std::string Describe() const;
};

/// An error with the standard message for `code` and data {"detail": detail}.
[[nodiscard]] RpcError MakeError(int code, std::string detail = {});

/// An errno-carrying error: code defaults to kKernelError, data from ErrorData().
[[nodiscard]] RpcError MakeError(const Error& err, int code = kKernelError);

/// Decodes an error object; nullopt if `j` is not {"code": int, "message": string, ...}.
[[nodiscard]] std::optional<RpcError> ParseError(const nlohmann::json& j);

/// {"fd": index}: how a message refers to the index-th fd it carries.
[[nodiscard]] nlohmann::json FdRef(std::size_t index);

/// The index if `j` is exactly an fd reference (an object whose only key is "fd",
/// holding a non-negative integer), else nullopt.
[[nodiscard]] std::optional<std::size_t> AsFdRef(const nlohmann::json& j);

/// Every fd index referenced anywhere inside `j`, in document order (may repeat).
[[nodiscard]] std::vector<std::size_t> CollectFdRefs(const nlohmann::json& j);

/// Adds `offset` to every fd reference inside `j` (used when several replies'
/// fds are merged into one batch line).
void OffsetFdRefs(nlohmann::json& j, std::size_t offset);

/// {"jsonrpc":"2.0","method":m,"params":p,"id":id}; no "id" when `id` is nullopt
/// (a notification); no "params" when `params` is null.
[[nodiscard]] nlohmann::json MakeRequest(const std::string& method, const nlohmann::json& params,
                                         std::optional<nlohmann::json> id);

/// {"jsonrpc":"2.0","result":r,"id":id}.
[[nodiscard]] nlohmann::json MakeResult(const nlohmann::json& id, nlohmann::json result);

/// {"jsonrpc":"2.0","error":e,"id":id}.
[[nodiscard]] nlohmann::json MakeErrorResponse(const nlohmann::json& id, const RpcError& err);

/// The compact single-line text of `j` followed by '\n'. Invalid UTF-8 in strings
/// is replaced rather than thrown on.
[[nodiscard]] std::string ToLine(const nlohmann::json& j);

/// The line of `reply` = MakeResult(id, nullptr) with `result_text` (compact
/// JSON text, serialised once ahead) as its result, spliced in without being
/// parsed or copied into a JSON value: the same bytes as
/// ToLine(MakeResult(id, json::parse(result_text))). Without '\n' when
/// `newline` is false (a batch element).
[[nodiscard]] std::string ToLine(const nlohmann::json& reply, std::string_view result_text,
                                 bool newline = true);

/// A server limit was reached: kBusy with data {"detail": detail, "limit":
/// limit}, `limit` naming the config key (limits.<limit>) that decided.
[[nodiscard]] RpcError MakeLimitError(std::string_view limit, std::string detail);

}  // namespace vfiod::wire
