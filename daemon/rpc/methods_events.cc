#include "rpc/methods_events.h"

#include "proto/errors.h"

namespace vfiod::rpc {

namespace {

/// params[key] if it is a non-negative integer.
std::optional<uint64_t> Unsigned(const nlohmann::json& params, const char* key) {
  if (!params.is_object()) {
    return std::nullopt;
  }
  auto it = params.find(key);
  if (it == params.end() || !it->is_number_integer() ||
      (!it->is_number_unsigned() && it->get<int64_t>() < 0)) {
    return std::nullopt;
  }
  return it->get<uint64_t>();
}

std::vector<std::string> Devices(const nlohmann::json& params) {
  std::vector<std::string> out;
  if (!params.is_object()) {
    return out;
  }
  if (auto bdf = params.find("bdf"); bdf != params.end() && bdf->is_string()) {
    out.push_back(bdf->get<std::string>());
  }
  if (auto devices = params.find("devices"); devices != params.end() && devices->is_array()) {
    for (const nlohmann::json& d : *devices) {
      if (d.is_string()) {
        out.push_back(d.get<std::string>());
      }
    }
  }
  return out;
}

}  // namespace

std::optional<journal::Event> FailureEvent(const std::string& method, uid_t uid, pid_t pid,
                                           const nlohmann::json& params,
                                           const wire::RpcError& error) {
  journal::Event event;
  switch (error.code) {
    case wire::kPermissionDenied:
      event.kind = journal::Kind::kPolicyRefused;
      break;
    case wire::kQuotaExceeded:
      event.kind = journal::Kind::kQuotaRefused;
      break;
    case wire::kKernelError:
      event.kind = journal::Kind::kKernelError;
      break;
    default:
      return std::nullopt;
  }
  event.message = method + " from uid " + std::to_string(uid) + ": " + error.Describe();
  event.uid = uid;
  event.pid = pid;
  event.method = method;
  event.container = Unsigned(params, "container");
  event.mapping = Unsigned(params, "mapping");
  event.bytes = Unsigned(params, "size");
  event.bdfs = Devices(params);
  if (error.data.is_object()) {
    if (auto err = error.data.find("errno"); err != error.data.end() && err->is_number_integer()) {
      event.error_number = err->get<int>();
    }
  }
  return event;
}

}  // namespace vfiod::rpc
