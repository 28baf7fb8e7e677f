#include "rpc/request.h"

namespace vfiod::rpc {

using nlohmann::json;

namespace {

bool ValidId(const json& id) { return id.is_string() || id.is_number_integer() || id.is_null(); }

std::unexpected<RequestError> Invalid(std::string detail, json id = nullptr) {
  return std::unexpected(
      RequestError{wire::MakeError(wire::kInvalidRequest, std::move(detail)), std::move(id)});
}

}  // namespace

std::expected<Request, RequestError> ParseRequest(const json& j) { return ParseRequest(json(j)); }

std::expected<Request, RequestError> ParseRequest(json&& j) {
  if (!j.is_object()) {
    return Invalid("a request must be an object");
  }
  Request req;
  if (auto id = j.find("id"); id != j.end()) {
    if (!ValidId(*id)) {
      return Invalid("id must be a string, an integer or null");
    }
    req.id = std::move(*id);
  }
  const json answer_id = req.id.value_or(nullptr);
  auto version = j.find("jsonrpc");
  if (version == j.end() || *version != wire::kVersion) {
    return Invalid("jsonrpc must be \"2.0\"", answer_id);
  }
  auto method = j.find("method");
  if (method == j.end() || !method->is_string()) {
    return Invalid("method must be a string", answer_id);
  }
  req.method = std::move(method->get_ref<std::string&>());
  auto params = j.find("params");
  if (params == j.end()) {
    req.params = json::object();
  } else if (params->is_object() || params->is_array()) {
    req.params = std::move(*params);
  } else {
    return Invalid("params must be an object or an array", answer_id);
  }
  for (const auto& [key, value] : j.items()) {
    if (key != "jsonrpc" && key != "method" && key != "params" && key != "id") {
      return Invalid("unknown member \"" + key + "\"", answer_id);
    }
  }
  return req;
}

}  // namespace vfiod::rpc
