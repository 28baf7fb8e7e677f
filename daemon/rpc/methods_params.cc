#include "rpc/methods_params.h"

#include <fmt/format.h>

#include "proto/jsonrpc.h"

namespace vfiod::rpc {

ParamReader::ParamReader(const nlohmann::json& params, std::string prefix)
    : params_(params), prefix_(std::move(prefix)) {
  if (params_.is_array() && params_.empty()) {
    return;  // no params at all
  }
  if (!params_.is_object()) {
    throw ParamError(prefix_ + ": expected an object of named params");
  }
}

const nlohmann::json* ParamReader::Find(const char* key) {
  known_.insert(key);
  if (!params_.is_object()) {
    return nullptr;
  }
  auto it = params_.find(key);
  return it == params_.end() ? nullptr : &*it;
}

const nlohmann::json* ParamReader::Raw(const char* key) { return Find(key); }

uint64_t ParamReader::AsU64(const nlohmann::json& v, const char* key) const {
  if (v.is_number_unsigned()) {
    return v.get<uint64_t>();
  }
  if (v.is_number_integer()) {
    if (v.get<int64_t>() < 0) {
      throw ParamError(Path(key) + ": expected a non-negative integer, got " + v.dump());
    }
    return static_cast<uint64_t>(v.get<int64_t>());
  }
  throw ParamError(Path(key) + ": expected an unsigned 64-bit integer, got " +
                   std::string(v.type_name()));
}

uint64_t ParamReader::U64(const char* key) {
  const nlohmann::json* v = Find(key);
  if (v == nullptr) {
    throw ParamError(Path(key) + ": missing");
  }
  return AsU64(*v, key);
}

std::optional<uint64_t> ParamReader::OptU64(const char* key) {
  const nlohmann::json* v = Find(key);
  if (v == nullptr || v->is_null()) {
    return std::nullopt;
  }
  return AsU64(*v, key);
}

std::optional<int64_t> ParamReader::OptInt(const char* key, int64_t min, int64_t max) {
  const nlohmann::json* v = Find(key);
  if (v == nullptr || v->is_null()) {
    return std::nullopt;
  }
  if (!v->is_number_integer()) {
    throw ParamError(Path(key) + ": expected an integer, got " + std::string(v->type_name()));
  }
  if (v->is_number_unsigned() && v->get<uint64_t>() > static_cast<uint64_t>(max)) {
    throw ParamError(fmt::format("{}: must be between {} and {}", Path(key), min, max));
  }
  int64_t n = v->get<int64_t>();
  if (n < min || n > max) {
    throw ParamError(fmt::format("{}: must be between {} and {}", Path(key), min, max));
  }
  return n;
}

std::string ParamReader::Str(const char* key) {
  auto s = OptStr(key);
  if (!s) {
    throw ParamError(Path(key) + ": missing");
  }
  return *s;
}

std::string ParamReader::Bdf(const char* key) {
  std::string bdf = Str(key);
  CheckBdf(Path(key), bdf);
  return bdf;
}

std::optional<std::string> ParamReader::OptStr(const char* key) {
  const nlohmann::json* v = Find(key);
  if (v == nullptr || v->is_null()) {
    return std::nullopt;
  }
  if (!v->is_string()) {
    throw ParamError(Path(key) + ": expected a string, got " + std::string(v->type_name()));
  }
  return v->get<std::string>();
}

bool ParamReader::OptBool(const char* key, bool fallback) {
  const nlohmann::json* v = Find(key);
  if (v == nullptr || v->is_null()) {
    return fallback;
  }
  if (!v->is_boolean()) {
    throw ParamError(Path(key) + ": expected a boolean, got " + std::string(v->type_name()));
  }
  return v->get<bool>();
}

std::vector<std::string> ParamReader::StrArray(const char* key) {
  const nlohmann::json* v = Find(key);
  if (v == nullptr) {
    throw ParamError(Path(key) + ": missing");
  }
  if (!v->is_array()) {
    throw ParamError(Path(key) + ": expected an array of strings");
  }
  std::vector<std::string> out;
  for (size_t i = 0; i < v->size(); ++i) {
    if (!(*v)[i].is_string()) {
      throw ParamError(fmt::format("{}[{}]: expected a string", Path(key), i));
    }
    out.push_back((*v)[i].get<std::string>());
  }
  return out;
}

size_t ParamReader::FdRef(const char* key) {
  const nlohmann::json* v = Find(key);
  if (v == nullptr) {
    throw ParamError(Path(key) + ": missing (an {\"fd\": n} reference)");
  }
  auto index = wire::AsFdRef(*v);
  if (!index) {
    throw ParamError(Path(key) + ": expected an {\"fd\": n} reference");
  }
  return *index;
}

void ParamReader::Finish() const {
  if (!params_.is_object()) {
    return;
  }
  for (const auto& [key, value] : params_.items()) {
    if (!known_.contains(key)) {
      throw ParamError(prefix_ + "." + key + ": unknown field");
    }
  }
}

void CheckBdf(const std::string& path, const std::string& text) {
  // [dddd:]bb:dd.f, each field hex; the service canonicalizes it.
  auto hex = [](std::string_view s) {
    return !s.empty() && s.find_first_not_of("0123456789abcdefABCDEF") == std::string_view::npos;
  };
  std::string_view t = text;
  if (t.size() == 12 && t[4] == ':') {
    if (!hex(t.substr(0, 4))) {
      t = {};
    } else {
      t.remove_prefix(5);
    }
  }
  bool ok = t.size() == 7 && t[2] == ':' && t[5] == '.' && hex(t.substr(0, 2)) &&
            hex(t.substr(3, 2)) && t[6] >= '0' && t[6] <= '7';
  if (!ok) {
    throw ParamError(path + ": '" + text + "' is not a PCI address ([dddd:]bb:dd.f)");
  }
}

void CheckAligned(const std::string& path, uint64_t value, uint64_t align) {
  if (align != 0 && value % align != 0) {
    throw ParamError(fmt::format("{}: {:#x} is not a multiple of {:#x}", path, value, align));
  }
}

void CheckNoWrap(const std::string& path, uint64_t base, uint64_t size) {
  if (size != 0 && base > UINT64_MAX - (size - 1)) {
    throw ParamError(fmt::format("{}: {:#x} + {:#x} overflows 64 bits", path, base, size));
  }
}

}  // namespace vfiod::rpc
