#include "vfioctl/format.h"

#include "vfioctl/sizes.h"

namespace vfiod::vfioctl {

using nlohmann::json;

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
  auto it = object.find(key);
  return it == object.end() || !it->is_number_unsigned() ? Field(object, key)
                                                         : FormatSize(it->get<uint64_t>());
}

std::string HexField(const json& object, const char* key) {
  auto it = object.find(key);
  return it == object.end() || !it->is_number_unsigned() ? Field(object, key)
                                                         : Hex(it->get<uint64_t>());
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
