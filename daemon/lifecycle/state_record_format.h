// What the state record's writer (state_record.cc) and reader
// (state_record_decode.cc) share; nothing else in the daemon includes this
// (the fuzz target uses the checksum to forge records).
#pragma once

#include <nlohmann/json.hpp>
#include <string>

namespace vfiod::lifecycle {

/// The record's "format" value.
inline constexpr const char* kStateRecordFormat = "vfiod-state";

/// The checksum of a record's body (the document without "checksum"): 64-bit
/// FNV-1a of its compact dump, as 16 lowercase hex digits.
[[nodiscard]] std::string StateRecordChecksum(const nlohmann::json& body);

}  // namespace vfiod::lifecycle
