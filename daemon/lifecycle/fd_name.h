// The names of fds in the service manager's fd store (FDNAME=, LISTEN_FDNAMES).
#pragma once

#include <cstddef>
#include <string_view>

namespace vfiod::lifecycle {

/// The longest FDNAME systemd accepts.
inline constexpr std::size_t kMaxFdNameLength = 255;

/// Whether `name` may be an FDNAME: 1 to 255 characters, each printable ASCII
/// (0x20-0x7e), none of them ':' (LISTEN_FDNAMES separates names with ':').
/// systemd refuses any other name, so vfiod checks before it sends one.
[[nodiscard]] bool IsValidFdName(std::string_view name);

}  // namespace vfiod::lifecycle
