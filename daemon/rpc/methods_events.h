// The key event a failed request is (journal/event.h): a policy or quota
// refusal, or a system call that failed, with who asked and what about.
#pragma once

#include <sys/types.h>

#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "journal/event.h"
#include "proto/jsonrpc.h"

namespace vfiod::rpc {

/// The event for `error`, the failure of `method` called by `uid`/`pid` with
/// `params`, if it is a key event: permission denied (kPolicyRefused), quota
/// exceeded (kQuotaRefused) or a kernel error (kKernelError, with ERRNO).
/// Other failures (bad params, not found, busy...) are the client's business
/// and give nullopt. The message keeps the form of the line every failure
/// gets: "<method> from uid <uid>: <error>". The container, mapping, devices
/// and size the params name, when well typed, become fields.
[[nodiscard]] std::optional<journal::Event> FailureEvent(const std::string& method, uid_t uid,
                                                         pid_t pid, const nlohmann::json& params,
                                                         const wire::RpcError& error);

}  // namespace vfiod::rpc
