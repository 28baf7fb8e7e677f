// libFuzzer target: the state record reader (lifecycle/state_record.h). A
// restarted vfiod runs it on whatever the fd store kept: a record from a vfiod
// of another version, one a crash cut short, any bytes at all.
//
// The input is a record; when it is a JSON object, the target writes the
// checksum it needs first (a random body never carries the right one), so the
// fuzzer reaches the checks behind it. Invariants:
//  - DecodeStateRecord never crashes or throws, and refuses with EINVAL and a
//    detail;
//  - what it accepts encodes to a record it accepts again, which re-encodes
//    to the same bytes (nothing lost or invented on the way).
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "fuzz_check.h"
#include "lifecycle/state_record.h"
#include "lifecycle/state_record_format.h"
#include "proto/framing.h"

namespace vfiod::fuzz {
namespace {

// VFIOD_FUZZ_LOG=1: says what became of the input (debugging a seed).
const bool kTrace = std::getenv("VFIOD_FUZZ_LOG") != nullptr;

// The input as a record: with the right checksum when it is a JSON object.
// Deeper than kMaxJsonDepth it is passed on as it is: the reader refuses it
// before parsing, and sealing it here would recurse in nlohmann's dump.
std::string Sealed(std::string_view input) {
  if (wire::JsonNestingDepth(input) > wire::kMaxJsonDepth) {
    return std::string(input);
  }
  nlohmann::json doc = nlohmann::json::parse(input, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded() || !doc.is_object()) {
    return std::string(input);
  }
  doc.erase("checksum");
  const std::string checksum = lifecycle::StateRecordChecksum(doc);
  doc["checksum"] = checksum;
  return doc.dump();
}

void Run(std::string_view input) {
  const std::string bytes = Sealed(input);
  auto record = lifecycle::DecodeStateRecord(bytes);
  if (kTrace) {
    (void)std::fprintf(stderr, "%s\n", record ? "accepted" : record.error().message().c_str());
  }
  if (!record) {
    FUZZ_CHECK(record.error().code == EINVAL && !record.error().detail.empty());
    return;
  }
  const std::string once = lifecycle::EncodeStateRecord(*record);
  auto again = lifecycle::DecodeStateRecord(once);
  FUZZ_CHECK(again.has_value());
  FUZZ_CHECK(lifecycle::EncodeStateRecord(*again) == once);
}

}  // namespace
}  // namespace vfiod::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  vfiod::fuzz::Run(std::string_view(reinterpret_cast<const char*>(data), size));
  return 0;
}
