#include "proto/jsonrpc.h"

#include <utility>

namespace vfiod::wire {

using nlohmann::json;

json RpcError::ToJson() const {
  json j = {{"code", code}, {"message", message}};
  if (!data.is_null()) {
    j["data"] = data;
  }
  return j;
}

std::string RpcError::Describe() const {
  std::string out = message + " (" + std::to_string(code) + ")";
  if (data.is_object()) {
    auto it = data.find("detail");
    if (it != data.end() && it->is_string() && !it->get_ref<const std::string&>().empty()) {
      out += ": " + it->get<std::string>();
    }
    auto name = data.find("errno_name");
    if (name != data.end() && name->is_string()) {
      out += " [" + name->get<std::string>() + "]";
    }
  }
  return out;
}

RpcError MakeError(int code, std::string detail) {
  RpcError e{code, std::string(CodeMessage(code)), nullptr};
  if (!detail.empty()) {
    e.data = json{{"detail", std::move(detail)}};
  }
  return e;
}

RpcError MakeError(const Error& err, int code) {
  return RpcError{code, std::string(CodeMessage(code)), ErrorData(err)};
}

std::optional<RpcError> ParseError(const json& j) {
  if (!j.is_object()) {
    return std::nullopt;
  }
  auto code = j.find("code");
  auto message = j.find("message");
  if (code == j.end() || !code->is_number_integer() || message == j.end() ||
      !message->is_string()) {
    return std::nullopt;
  }
  RpcError e{code->get<int>(), message->get<std::string>(), nullptr};
  if (auto data = j.find("data"); data != j.end()) {
    e.data = *data;
  }
  return e;
}

json FdRef(std::size_t index) { return json{{"fd", index}}; }

std::optional<std::size_t> AsFdRef(const json& j) {
  if (!j.is_object() || j.size() != 1) {
    return std::nullopt;
  }
  auto it = j.find("fd");
  if (it == j.end() || !it->is_number_unsigned()) {
    return std::nullopt;
  }
  return it->get<std::size_t>();
}

namespace {

// J is json or const json: one walk serves both the reading and the rewriting use.
template <class J, class Visit>
void VisitFdRefs(J& j, const Visit& visit) {
  if (auto index = AsFdRef(j)) {
    visit(j, *index);
    return;
  }
  if (j.is_object() || j.is_array()) {
    for (auto& child : j) {
      VisitFdRefs(child, visit);
    }
  }
}

}  // namespace

std::vector<std::size_t> CollectFdRefs(const json& j) {
  std::vector<std::size_t> out;
  VisitFdRefs(j, [&](const json&, std::size_t i) { out.push_back(i); });
  return out;
}

void OffsetFdRefs(json& j, std::size_t offset) {
  VisitFdRefs(j, [&](json& ref, std::size_t i) { ref["fd"] = i + offset; });
}

json MakeRequest(const std::string& method, const json& params, std::optional<json> id) {
  json j = {{"jsonrpc", kVersion}, {"method", method}};
  if (!params.is_null()) {
    j["params"] = params;
  }
  if (id) {
    j["id"] = std::move(*id);
  }
  return j;
}

json MakeResult(const json& id, json result) {
  return json{{"jsonrpc", kVersion}, {"result", std::move(result)}, {"id", id}};
}

json MakeErrorResponse(const json& id, const RpcError& err) {
  return json{{"jsonrpc", kVersion}, {"error", err.ToJson()}, {"id", id}};
}

std::string ToLine(const json& j) {
  std::string line = j.dump(-1, ' ', false, json::error_handler_t::replace);
  line.push_back('\n');
  return line;
}

std::string ToLine(const json& reply, std::string_view result_text, bool newline) {
  // "result" sorts last among the keys of a reply, so the text ends in "null}".
  std::string line = reply.dump(-1, ' ', false, json::error_handler_t::replace);
  constexpr std::string_view kNullEnd = "null}";
  if (!line.ends_with(kNullEnd)) {  // not a MakeResult(id, nullptr): the slow, general way
    json whole = reply;
    whole["result"] = json::parse(result_text, nullptr, false);
    line = ToLine(whole);
    return newline ? line : line.substr(0, line.size() - 1);
  }
  line.resize(line.size() - kNullEnd.size());
  line.reserve(line.size() + result_text.size() + 2);
  line.append(result_text);
  line.push_back('}');
  if (newline) {
    line.push_back('\n');
  }
  return line;
}

RpcError MakeLimitError(std::string_view limit, std::string detail) {
  RpcError e = MakeError(kBusy, std::move(detail));
  e.data["limit"] = std::string(limit);
  return e;
}

}  // namespace vfiod::wire
