// vfioctl's exit codes (documented in README.md, "Using vfioctl"; stable) and
// the failure value every command returns instead of throwing.
#pragma once

#include <expected>
#include <string>

#include "proto/jsonrpc.h"

namespace vfiod::vfioctl {

/// Process exit status. Scripts may rely on these values.
enum class Exit : int {
  kOk = 0,
  kUsage = 1,        ///< bad command line, or the daemon refused the parameters
  kUnreachable = 2,  ///< no daemon at the socket, or the connection broke
  kRefused = 3,      ///< the daemon's policy refused (permission or quota)
  kRpcError = 4,     ///< any other error the daemon reported
  kTimeout = 5,      ///< no reply within --timeout
};

/// Why a command failed: the exit status and one line for stderr.
struct Failure {
  Exit exit = Exit::kRpcError;
  std::string message;
};

using CmdResult = std::expected<void, Failure>;

/// The exit status for an error the client library returned: transport
/// errors are kUnreachable, kClientTimeout kTimeout, permission and quota
/// kRefused, invalid params kUsage, everything else kRpcError.
[[nodiscard]] Exit ExitFor(const wire::RpcError& err);

/// One line describing `err` for a human: "<message>: <detail> (<ERRNO>)".
[[nodiscard]] std::string DescribeRpcError(const wire::RpcError& err);

/// A Failure for `err` raised by calling `method`.
[[nodiscard]] Failure FailureFor(const std::string& method, const wire::RpcError& err);

/// A usage failure (exit 1) with `message`.
[[nodiscard]] inline std::unexpected<Failure> UsageError(std::string message) {
  return std::unexpected(Failure{Exit::kUsage, std::move(message)});
}

}  // namespace vfiod::vfioctl
