// The default of limits.max_locked_bytes: a share of the machine's memory,
// read from /proc/meminfo when the daemon starts.
#include <charconv>
#include <fstream>
#include <sstream>

#include "service/config.h"

namespace vfiod::service {

std::optional<uint64_t> DefaultMaxLockedBytes(std::string_view meminfo) {
  constexpr std::string_view kKey = "MemTotal:";
  size_t at = 0;
  while (at < meminfo.size() && meminfo.substr(at, kKey.size()) != kKey) {
    const size_t eol = meminfo.find('\n', at);
    at = eol == std::string_view::npos ? meminfo.size() : eol + 1;
  }
  if (at >= meminfo.size()) {
    return std::nullopt;
  }
  std::string_view line = meminfo.substr(at + kKey.size());
  line = line.substr(0, line.find('\n'));
  const size_t digits = line.find_first_not_of(' ');
  if (digits == std::string_view::npos) {
    return std::nullopt;
  }
  line.remove_prefix(digits);
  uint64_t kib = 0;
  auto [end, ec] = std::from_chars(line.data(), line.data() + line.size(), kib);
  if (ec != std::errc() || std::string_view(end, line.data() + line.size()) != " kB" || kib == 0 ||
      kib > (UINT64_MAX >> 10) / kDefaultLockedShareNum) {
    return std::nullopt;
  }
  return (kib << 10) / kDefaultLockedShareDen * kDefaultLockedShareNum;
}

uint64_t ResolveMaxLockedBytes(const Limits& limits, const std::string& meminfo_path) {
  if (limits.max_locked_bytes) {
    return *limits.max_locked_bytes;
  }
  std::ifstream in(meminfo_path);
  std::stringstream text;
  text << in.rdbuf();
  return DefaultMaxLockedBytes(text.str()).value_or(kUnlimited);
}

}  // namespace vfiod::service
