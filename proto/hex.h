// Hexadecimal text for addresses, sizes and ioctl numbers in messages.
#pragma once

#include <charconv>
#include <cstdint>
#include <string>
#include <system_error>

namespace vfiod {

/// "0x" and the lowercase hex digits of `value`, as printf's "%#llx" would
/// write it except that 0 is "0x0".
[[nodiscard]] inline std::string Hex(uint64_t value) {
  char digits[16];  // 64 bits
  const auto [end, ec] = std::to_chars(digits, digits + sizeof digits, value, 16);
  return "0x" + std::string(digits, ec == std::errc{} ? end : digits);
}

}  // namespace vfiod
