#include "vfioctl/format.h"

#include <optional>

#include "vfioctl/sizes.h"

namespace vfiod::vfioctl {

using nlohmann::json;

namespace {

// A non-negative integer (parsed replies hold unsigned numbers, literals signed ones).
std::optional<uint64_t> AsU64(const json& value) {
  if (value.is_number_unsigned()) {
    return value.get<uint64_t>();
  }
  if (value.is_number_integer() && value.get<int64_t>() >= 0) {
    return static_cast<uint64_t>(value.get<int64_t>());
  }
  return std::nullopt;
}

}  // namespace

const json& Member(const json& object, const char* key) {
  static const json kNull;
  if (!object.is_object()) {
    return kNull;
  }
  auto it = object.find(key);
  return it == object.end() ? kNull : *it;
}

std::string Text(const json& value) {
  switch (value.type()) {
    case json::value_t::null:
    case json::value_t::discarded:
      return "-";
    case json::value_t::string:
      return value.get<std::string>();
    case json::value_t::boolean:
      return value.get<bool>() ? "yes" : "no";
    case json::value_t::array: {
      std::string out;
      for (const json& element : value) {
        out += (out.empty() ? "" : ",") + Text(element);
      }
      return out.empty() ? "-" : out;
    }
    default:
      return value.dump();
  }
}

std::string Field(const json& object, const char* key) {
  auto it = object.find(key);
  return it == object.end() ? "-" : Text(*it);
}

std::string SizeField(const json& object, const char* key) {
  auto value = AsU64(Member(object, key));
  return value ? FormatSize(*value) : Field(object, key);
}

std::string HexField(const json& object, const char* key) {
  auto value = AsU64(Member(object, key));
  return value ? Hex(*value) : Field(object, key);
}

std::string Count(const json& object, const char* key, const char* one, const char* many) {
  const json& value = Member(object, key);
  bool single = AsU64(value) == uint64_t{1};
  return Text(value) + " " + (single ? one : many);
}

std::string PageSizes(uint64_t bitmap) {
  std::string out;
  static constexpr const char* kSuffix[] = {"", "K", "M", "G", "T", "P"};
  for (int bit = 0; bit < 64; ++bit) {
    if ((bitmap >> bit & 1) == 0) {
      continue;
    }
    int unit = bit / 10;
    std::string size = std::to_string(uint64_t{1} << (bit - unit * 10)) + kSuffix[unit];
    out += (out.empty() ? "" : ", ") + size;
  }
  return out.empty() ? "-" : out;
}

}  // namespace vfiod::vfioctl
