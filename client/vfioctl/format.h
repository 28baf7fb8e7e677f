// Turning JSON values of vfiod's replies into table cells.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

namespace vfiod::vfioctl {

/// `object[key]` by reference, or a null value when absent (iterating a null
/// value visits nothing), so replies with missing parts print as empty.
[[nodiscard]] const nlohmann::json& Member(const nlohmann::json& object, const char* key);

/// A cell for any JSON value: strings as they are, numbers in decimal,
/// booleans "yes"/"no", null or absent "-", arrays comma-separated.
[[nodiscard]] std::string Text(const nlohmann::json& value);

/// The cell for `object[key]` ("-" when absent).
[[nodiscard]] std::string Field(const nlohmann::json& object, const char* key);

/// `object[key]` (an unsigned integer) as FormatSize() text; "-" when absent.
[[nodiscard]] std::string SizeField(const nlohmann::json& object, const char* key);

/// `object[key]` (an unsigned integer) in hex; "-" when absent.
[[nodiscard]] std::string HexField(const nlohmann::json& object, const char* key);

/// "1 entry" / "3 entries": `object[key]` with the noun that agrees with it.
[[nodiscard]] std::string Count(const nlohmann::json& object, const char* key, const char* one,
                                const char* many);

/// The page sizes of an iova_pgsizes bitmap: "4K, 2M, 1G".
[[nodiscard]] std::string PageSizes(uint64_t bitmap);

}  // namespace vfiod::vfioctl
