#include "vfioctl/exit_codes.h"

namespace vfiod::vfioctl {

Exit ExitFor(const wire::RpcError& err) {
  switch (err.code) {
    case wire::kClientTransport:
      return Exit::kUnreachable;
    case wire::kClientTimeout:
      return Exit::kTimeout;
    case wire::kPermissionDenied:
    case wire::kQuotaExceeded:
      return Exit::kRefused;
    case wire::kInvalidParams:
      return Exit::kUsage;
    default:
      return Exit::kRpcError;
  }
}

std::string DescribeRpcError(const wire::RpcError& err) {
  std::string text = err.message.empty() ? std::string(wire::CodeMessage(err.code)) : err.message;
  if (err.data.is_object()) {
    const nlohmann::json& detail = err.data.contains("detail") ? err.data["detail"] : err.data;
    if (detail.is_string() && !detail.get<std::string>().empty()) {
      text += ": " + detail.get<std::string>();
    }
    const nlohmann::json& name =
        err.data.contains("errno_name") ? err.data["errno_name"] : err.data;
    if (name.is_string()) {
      text += " (" + name.get<std::string>() + ")";
    }
  }
  return text;
}

Failure FailureFor(const std::string& method, const wire::RpcError& err) {
  Exit exit = ExitFor(err);
  std::string text = method + ": " + DescribeRpcError(err);
  if (exit == Exit::kUnreachable) {
    text += " (is vfiod running? see --socket)";
  }
  return Failure{exit, std::move(text)};
}

}  // namespace vfiod::vfioctl
