// Sizes and addresses on vfioctl's command line and in its tables.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace vfiod::vfioctl {

/// Parses a byte count or address: decimal digits, or 0x-prefixed hex, with an
/// optional binary suffix K, M, G or T (any case, optionally followed by "iB"
/// or "B"): "4096", "2M", "1GiB", "0x100000", "256m". nullopt when malformed
/// or when the value does not fit in 64 bits.
[[nodiscard]] std::optional<uint64_t> ParseSize(std::string_view text);

/// A size for humans: the largest binary unit that keeps the number >= 1,
/// exact when it divides ("2 MiB", "1 GiB", "512 B"), else with two decimals
/// ("1.50 GiB").
[[nodiscard]] std::string FormatSize(uint64_t bytes);

/// "0x..." in lower case, no padding.
[[nodiscard]] std::string Hex(uint64_t value);

}  // namespace vfiod::vfioctl
