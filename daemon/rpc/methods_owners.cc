// Users and groups in params (container.attach's owner, share lists): a uid
// or gid as a number, or a name looked up in the system's databases.
#include <grp.h>
#include <pwd.h>

#include <vector>

#include "rpc/methods_params.h"

namespace vfiod::rpc {

using nlohmann::json;

namespace {

/// The number `value` holds (a JSON integer or a string of digits), if any.
std::optional<uint64_t> AsNumber(const json& value) {
  if (value.is_number_unsigned()) {
    return value.get<uint64_t>();
  }
  if (value.is_number_integer()) {
    return std::nullopt;  // negative
  }
  if (!value.is_string()) {
    return std::nullopt;
  }
  const std::string& text = value.get_ref<const std::string&>();
  if (text.empty() || text.size() > 10 ||
      text.find_first_not_of("0123456789") != std::string::npos) {
    return std::nullopt;
  }
  return std::stoull(text);
}

/// Checks `value` is a number below 2^32 - 1 or a non-empty name; returns the number if one.
std::optional<uint32_t> IdOrName(const std::string& path, const json& value, const char* kind) {
  if (auto n = AsNumber(value)) {
    if (*n >= UINT32_MAX) {
      throw ParamError(path + ": " + std::to_string(*n) + " is not a valid " + kind + " id");
    }
    return static_cast<uint32_t>(*n);
  }
  if (!value.is_string() || value.get_ref<const std::string&>().empty()) {
    throw ParamError(path + ": expected a " + std::string(kind) + " name or id");
  }
  return std::nullopt;
}

}  // namespace

uid_t ReadUser(const std::string& path, const json& value) {
  if (auto id = IdOrName(path, value, "user")) {
    return *id;
  }
  const std::string& name = value.get_ref<const std::string&>();
  passwd entry{};
  passwd* found = nullptr;
  std::vector<char> buf(16384);
  if (::getpwnam_r(name.c_str(), &entry, buf.data(), buf.size(), &found) != 0 || found == nullptr) {
    throw ParamError(path + ": no user named '" + name + "'");
  }
  return found->pw_uid;
}

gid_t ReadGroup(const std::string& path, const json& value) {
  if (auto id = IdOrName(path, value, "group")) {
    return *id;
  }
  const std::string& name = value.get_ref<const std::string&>();
  group entry{};
  group* found = nullptr;
  std::vector<char> buf(65536);
  if (::getgrnam_r(name.c_str(), &entry, buf.data(), buf.size(), &found) != 0 || found == nullptr) {
    throw ParamError(path + ": no group named '" + name + "'");
  }
  return found->gr_gid;
}

service::ShareList ReadShareList(ParamReader& p) {
  service::ShareList out;
  auto each = [&](const char* key, auto&& add) {
    const json* list = p.Raw(key);
    if (list == nullptr) {
      return;
    }
    if (!list->is_array()) {
      throw ParamError(p.Path(key) + ": expected an array");
    }
    if (list->size() > kMaxShareEntries) {
      throw ParamError(p.Path(key) + ": more than " + std::to_string(kMaxShareEntries) +
                       " entries");
    }
    for (size_t i = 0; i < list->size(); ++i) {
      add(p.Path(key) + "[" + std::to_string(i) + "]", (*list)[i]);
    }
  };
  each("users",
       [&](const std::string& path, const json& v) { out.users.insert(ReadUser(path, v)); });
  each("groups",
       [&](const std::string& path, const json& v) { out.groups.insert(ReadGroup(path, v)); });
  return out;
}

}  // namespace vfiod::rpc
