#include "vfioctl/sizes.h"

#include <array>
#include <cctype>
#include <charconv>
#include <string>
#include <system_error>

#include "proto/hex.h"

namespace vfiod::vfioctl {

namespace {

// The shift a suffix stands for, consuming it from the end of `text`; 0 when
// there is none; nullopt when the tail is not a suffix.
std::optional<int> TakeSuffix(std::string_view& text) {
  auto ends_with_ci = [&](std::string_view tail) {
    if (text.size() < tail.size()) {
      return false;
    }
    for (size_t i = 0; i < tail.size(); ++i) {
      char c = static_cast<char>(
          std::tolower(static_cast<unsigned char>(text[text.size() - tail.size() + i])));
      if (c != tail[i]) {
        return false;
      }
    }
    return true;
  };
  if (ends_with_ci("ib")) {
    text.remove_suffix(2);
  } else if (ends_with_ci("b")) {
    text.remove_suffix(1);  // "2MB", "512B" (hex never gets here)
  }
  if (text.empty()) {
    return std::nullopt;
  }
  switch (std::tolower(static_cast<unsigned char>(text.back()))) {
    case 'k':
      text.remove_suffix(1);
      return 10;
    case 'm':
      text.remove_suffix(1);
      return 20;
    case 'g':
      text.remove_suffix(1);
      return 30;
    case 't':
      text.remove_suffix(1);
      return 40;
    default:
      return 0;
  }
}

}  // namespace

std::optional<uint64_t> ParseSize(std::string_view text) {
  int base = 10;
  int shift = 0;
  if (text.size() > 2 && text[0] == '0' && (text[1] == 'x' || text[1] == 'X')) {
    text.remove_prefix(2);
    base = 16;  // hex takes no suffix: 'b' is a digit there
  } else {
    auto suffix = TakeSuffix(text);
    if (!suffix) {
      return std::nullopt;
    }
    shift = *suffix;
  }
  if (text.empty()) {
    return std::nullopt;
  }
  uint64_t value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value, base);
  if (ec != std::errc() || end != text.data() + text.size()) {
    return std::nullopt;
  }
  if (shift > 0 && value > (UINT64_MAX >> shift)) {
    return std::nullopt;
  }
  return value << shift;
}

std::string FormatSize(uint64_t bytes) {
  static constexpr std::array<const char*, 5> kUnits = {"B", "KiB", "MiB", "GiB", "TiB"};
  size_t unit = 0;
  while (unit + 1 < kUnits.size() && bytes >= (uint64_t{1} << (10 * (unit + 1)))) {
    ++unit;
  }
  const uint64_t scale = uint64_t{1} << (10 * unit);
  if (bytes % scale == 0) {
    return std::to_string(bytes / scale) + " " + kUnits[unit];
  }
  char buf[32];  // "%.2f" of a value below 1024
  const double value = static_cast<double>(bytes) / static_cast<double>(scale);
  const auto [end, ec] = std::to_chars(buf, buf + sizeof buf, value, std::chars_format::fixed, 2);
  return std::string(buf, ec == std::errc{} ? end : buf) + " " + kUnits[unit];
}

std::string Hex(uint64_t value) { return vfiod::Hex(value); }

}  // namespace vfiod::vfioctl
