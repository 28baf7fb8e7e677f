// Internal to config.cc: typed readers over nlohmann::json that know the JSON
// path of the value they read, so every refusal names the offending key.
// They throw ConfigError; ParseConfig catches it at the edge and turns it into
// a Result, so no exception leaves the config code.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <initializer_list>
#include <nlohmann/json.hpp>
#include <span>
#include <string>
#include <string_view>

namespace vfiod::service {
struct NameResolver;
}  // namespace vfiod::service

namespace vfiod::service::config_detail {

using Json = nlohmann::json;

/// A refused value: `path` is its JSON path ("limits.max_batch"), `message` why.
struct ConfigError {
  std::string path;
  std::string message;
};

/// "a.b" from ("a", "b"); "b" from ("", "b").
[[nodiscard]] std::string Key(const std::string& path, std::string_view key);
/// "a[3]".
[[nodiscard]] std::string Index(const std::string& path, size_t index);
/// Throws ConfigError{path, message}.
[[noreturn]] void Bad(const std::string& path, std::string message);

/// Throws unless `value` is an object whose keys are all in `allowed`.
void CheckObject(const Json& value, const std::string& path,
                 std::span<const std::string_view> allowed);
inline void CheckObject(const Json& value, const std::string& path,
                        std::initializer_list<std::string_view> allowed) {
  CheckObject(value, path, std::span<const std::string_view>(allowed.begin(), allowed.size()));
}
/// Throws unless `value` is an array; returns it.
const Json& RequireArray(const Json& value, const std::string& path);

/// Calls read(value, path) for obj[key] when the key is present.
template <class Read>
void IfPresent(const Json& obj, const std::string& path, std::string_view key, Read&& read) {
  if (auto it = obj.find(key); it != obj.end()) {
    read(*it, Key(path, key));
  }
}

/// A non-empty string.
[[nodiscard]] std::string ReadString(const Json& value, const std::string& path);
[[nodiscard]] bool ReadBool(const Json& value, const std::string& path);
/// A JSON integer in [min, max].
[[nodiscard]] uint64_t ReadInteger(const Json& value, const std::string& path, uint64_t min,
                                   uint64_t max);
/// A size: an integer or a string such as "512M"; with `allow_unlimited` the
/// string "unlimited" reads as kUnlimited.
[[nodiscard]] uint64_t ReadSize(const Json& value, const std::string& path, bool allow_unlimited);
/// Permission bits as an octal string ("0660"), at most 0777.
[[nodiscard]] mode_t ReadMode(const Json& value, const std::string& path);
/// A 16-bit PCI id: a hex string ("1234" or "0x1234") or an integer.
[[nodiscard]] uint16_t ReadPciId(const Json& value, const std::string& path);
/// A full PCI address, returned in canonical form.
[[nodiscard]] std::string ReadBdf(const Json& value, const std::string& path);
/// An absolute path.
[[nodiscard]] std::string ReadAbsolutePath(const Json& value, const std::string& path);

/// A user: a name resolved through `names`, or a uid (an integer).
[[nodiscard]] uid_t ReadUserId(const Json& value, const std::string& path,
                               const NameResolver& names);
/// A group: a name resolved through `names`, or a gid (an integer).
[[nodiscard]] gid_t ReadGroupId(const Json& value, const std::string& path,
                                const NameResolver& names);

}  // namespace vfiod::service::config_detail
