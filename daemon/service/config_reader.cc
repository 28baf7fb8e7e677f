#include "service/config_reader.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <optional>
#include <string>
#include <utility>

#include "service/config.h"
#include "vfio/pci_sysfs.h"

namespace vfiod::service {
namespace {

bool IsHex(std::string_view text) {
  return !text.empty() && std::all_of(text.begin(), text.end(),
                                      [](unsigned char c) { return std::isxdigit(c) != 0; });
}

// Parses exactly `text` as hex; nullopt if empty, not hex, or above `max`.
std::optional<uint32_t> ParseHex(std::string_view text, uint32_t max) {
  uint32_t value = 0;
  if (!IsHex(text)) {
    return std::nullopt;
  }
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value, 16);
  if (ec != std::errc{} || end != text.data() + text.size() || value > max) {
    return std::nullopt;
  }
  return value;
}

}  // namespace

std::optional<uint64_t> ParseSize(std::string_view text) {
  int shift = 0;
  if (!text.empty()) {
    switch (text.back()) {
      case 'K':
      case 'k':
        shift = 10;
        break;
      case 'M':
      case 'm':
        shift = 20;
        break;
      case 'G':
      case 'g':
        shift = 30;
        break;
      case 'T':
      case 't':
        shift = 40;
        break;
      default:
        break;
    }
  }
  if (shift != 0) {
    text.remove_suffix(1);
  }
  if (text.empty() || !std::all_of(text.begin(), text.end(),
                                   [](unsigned char c) { return std::isdigit(c) != 0; })) {
    return std::nullopt;
  }
  uint64_t value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc{} || end != text.data() + text.size()) {
    return std::nullopt;  // out of range
  }
  if (shift != 0 && value > (std::numeric_limits<uint64_t>::max() >> shift)) {
    return std::nullopt;
  }
  return value << shift;
}

std::optional<std::string> CanonicalBdf(std::string_view text) {
  auto bdf = vfio::NormalizeBdf(text, vfio::BdfDomain::kRequired);
  return bdf ? std::optional<std::string>(std::move(*bdf)) : std::nullopt;
}

namespace config_detail {

std::string Key(const std::string& path, std::string_view key) {
  return path.empty() ? std::string(key) : path + "." + std::string(key);
}

std::string Index(const std::string& path, size_t index) {
  return path + "[" + std::to_string(index) + "]";
}

void Bad(const std::string& path, std::string message) {
  throw ConfigError{path, std::move(message)};
}

void CheckObject(const Json& value, const std::string& path,
                 std::span<const std::string_view> allowed) {
  if (!value.is_object()) {
    Bad(path, "expected an object");
  }
  for (const auto& [key, unused] : value.items()) {
    if (std::find(allowed.begin(), allowed.end(), key) == allowed.end()) {
      std::string expected;
      for (std::string_view name : allowed) {
        expected += (expected.empty() ? "" : ", ") + std::string(name);
      }
      Bad(Key(path, key), "unknown key (expected one of: " + expected + ")");
    }
  }
}

const Json& RequireArray(const Json& value, const std::string& path) {
  if (!value.is_array()) {
    Bad(path, "expected an array");
  }
  return value;
}

std::string ReadString(const Json& value, const std::string& path) {
  if (!value.is_string()) {
    Bad(path, "expected a string");
  }
  std::string text = value.get<std::string>();
  if (text.empty()) {
    Bad(path, "must not be empty");
  }
  return text;
}

bool ReadBool(const Json& value, const std::string& path) {
  if (!value.is_boolean()) {
    Bad(path, "expected true or false");
  }
  return value.get<bool>();
}

uint64_t ReadInteger(const Json& value, const std::string& path, uint64_t min, uint64_t max) {
  if (!value.is_number_unsigned()) {
    Bad(path, "expected a non-negative integer");
  }
  uint64_t number = value.get<uint64_t>();
  if (number < min || number > max) {
    Bad(path, "must be between " + std::to_string(min) + " and " + std::to_string(max));
  }
  return number;
}

uint64_t ReadSize(const Json& value, const std::string& path, bool allow_unlimited) {
  if (value.is_number_unsigned()) {
    return value.get<uint64_t>();
  }
  if (value.is_number()) {
    Bad(path, "expected a non-negative integer");
  }
  const char* expected = allow_unlimited
                             ? "expected a non-negative integer, a size such as \"512M\", "
                               "or \"unlimited\""
                             : "expected a non-negative integer or a size such as \"512M\"";
  if (!value.is_string()) {
    Bad(path, expected);
  }
  const auto& text = value.get_ref<const std::string&>();
  if (allow_unlimited && text == "unlimited") {
    return kUnlimited;
  }
  auto size = ParseSize(text);
  if (!size) {
    Bad(path, std::string(expected) + ", not \"" + text + "\"");
  }
  return *size;
}

mode_t ReadMode(const Json& value, const std::string& path) {
  const char* expected = "expected an octal mode string such as \"0660\"";
  if (!value.is_string()) {
    Bad(path, expected);
  }
  const auto& text = value.get_ref<const std::string&>();
  unsigned mode = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), mode, 8);
  if (text.empty() || ec != std::errc{} || end != text.data() + text.size()) {
    Bad(path, std::string(expected) + ", not \"" + text + "\"");
  }
  if (mode > 0777) {
    Bad(path, "mode \"" + text + "\" has bits above 0777");
  }
  return static_cast<mode_t>(mode);
}

uint16_t ReadPciId(const Json& value, const std::string& path) {
  if (value.is_number_unsigned()) {
    return static_cast<uint16_t>(ReadInteger(value, path, 0, 0xffff));
  }
  if (!value.is_string()) {
    Bad(path, "expected a hex id string such as \"1234\"");
  }
  std::string_view text = value.get_ref<const std::string&>();
  if (text.starts_with("0x") || text.starts_with("0X")) {
    text.remove_prefix(2);
  }
  auto id = text.size() <= 4 ? ParseHex(text, 0xffff) : std::nullopt;
  if (!id) {
    Bad(path, "expected a hex id of at most 4 digits, not \"" + value.get<std::string>() + "\"");
  }
  return static_cast<uint16_t>(*id);
}

std::string ReadBdf(const Json& value, const std::string& path) {
  std::string text = ReadString(value, path);
  auto bdf = CanonicalBdf(text);
  if (!bdf) {
    Bad(path, "expected a PCI address such as \"0000:00:03.0\", not \"" + text + "\"");
  }
  return *bdf;
}

std::string ReadAbsolutePath(const Json& value, const std::string& path) {
  std::string text = ReadString(value, path);
  if (text.front() != '/') {
    Bad(path, "expected an absolute path, not \"" + text + "\"");
  }
  return text;
}

namespace {
constexpr uint64_t kMaxId = 0xfffffffe;  // (uid_t)-1 means "unchanged" to the kernel
}  // namespace

uid_t ReadUserId(const Json& value, const std::string& path, const NameResolver& names) {
  if (value.is_number()) {
    return static_cast<uid_t>(ReadInteger(value, path, 0, kMaxId));
  }
  std::string name = ReadString(value, path);
  auto uid = names.user(name);
  if (!uid) {
    Bad(path, "unknown user \"" + name + "\"");
  }
  return *uid;
}

gid_t ReadGroupId(const Json& value, const std::string& path, const NameResolver& names) {
  if (value.is_number()) {
    return static_cast<gid_t>(ReadInteger(value, path, 0, kMaxId));
  }
  std::string name = ReadString(value, path);
  auto gid = names.group(name);
  if (!gid) {
    Bad(path, "unknown group \"" + name + "\"");
  }
  return *gid;
}

}  // namespace config_detail
}  // namespace vfiod::service
