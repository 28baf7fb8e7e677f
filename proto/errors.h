// JSON-RPC 2.0 error codes used on the vfiod wire, and the shape of error.data.
//
// Every error object the daemon sends is {"code": c, "message": m, "data": d}
// where d, when present, is {"errno": n, "errno_name": "EINVAL", "detail": "..."}
// (errno/errno_name only when an errno caused the failure).
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "proto/result.h"

namespace vfiod::wire {

// Codes defined by JSON-RPC 2.0.
inline constexpr int kParseError = -32700;      ///< the line is not valid JSON
inline constexpr int kInvalidRequest = -32600;  ///< valid JSON, not a valid request object
inline constexpr int kMethodNotFound = -32601;  ///< no method of that name is registered
inline constexpr int kInvalidParams =
    -32602;  ///< params missing, of the wrong type or out of range
inline constexpr int kInternalError = -32603;  ///< a bug or an unexpected failure in the daemon

// vfiod server codes (-32000..-32099, the range JSON-RPC leaves to servers).
inline constexpr int kKernelError = -32001;       ///< a syscall/ioctl failed; data.errno says which
inline constexpr int kPermissionDenied = -32002;  ///< the policy does not allow this caller
inline constexpr int kNotFound = -32003;          ///< the named device/mapping/session is unknown
inline constexpr int kQuotaExceeded = -32004;  ///< the caller's memory or mapping quota is used up
inline constexpr int kBusy = -32005;           ///< too many requests in flight, or resource busy
inline constexpr int kFrameTooLarge = -32006;  ///< a line exceeded the frame limit; conn. closes
inline constexpr int kFdError = -32007;        ///< fd passing failed (truncated, missing, surplus)
inline constexpr int kCancelled = -32008;      ///< the request was cancelled (connection closing)
inline constexpr int kConflict = -32009;       ///< the request conflicts with existing state
inline constexpr int kShuttingDown = -32010;   ///< the daemon is stopping; no new work

// Codes the client library reports locally; never sent by the daemon.
inline constexpr int kClientTransport = -32090;  ///< connect/send/receive failed; data.errno why
inline constexpr int kClientTimeout = -32091;    ///< no response within the caller's timeout
inline constexpr int kClientProtocol = -32092;   ///< the daemon sent something unparseable

/// The standard message for a code ("Parse error", "Kernel error", ...).
[[nodiscard]] std::string_view CodeMessage(int code);

/// The code's name as a metric label: CodeMessage in lower snake case
/// ("parse_error", "not_found", "file_descriptor_error"; "server_error" for
/// an unknown code). Stable as long as the messages are.
[[nodiscard]] std::string CodeName(int code);

/// The symbolic name of an errno value ("EINVAL"); "E?" followed by the number if unknown.
[[nodiscard]] std::string ErrnoName(int err);

/// error.data for `err`: {"errno": n, "errno_name": "...", "detail": "op: detail"}; errno
/// fields are left out when err.code is 0.
[[nodiscard]] nlohmann::json ErrorData(const Error& err);

}  // namespace vfiod::wire
