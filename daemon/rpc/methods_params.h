// Reading and checking the params of an API method. A ParamError names the
// JSON path of the offending field; the method wrapper turns it into
// -32602 Invalid params. (Exceptions stay inside this JSON-decoding edge.)
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "service/views.h"

namespace vfiod::rpc {

/// A params field is missing, of the wrong type, or out of range.
class ParamError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// Typed access to a by-name params object. Every accessor records the key;
/// Finish() refuses keys the method does not know.
class ParamReader {
 public:
  /// Throws ParamError unless `params` is an object (or an empty array).
  explicit ParamReader(const nlohmann::json& params, std::string prefix = "params");

  [[nodiscard]] uint64_t U64(const char* key);
  [[nodiscard]] std::optional<uint64_t> OptU64(const char* key);
  [[nodiscard]] std::optional<int64_t> OptInt(const char* key, int64_t min, int64_t max);
  [[nodiscard]] std::string Str(const char* key);
  [[nodiscard]] std::optional<std::string> OptStr(const char* key);
  /// The PCI address at `key` (required), checked with CheckBdf.
  [[nodiscard]] std::string Bdf(const char* key);
  [[nodiscard]] bool OptBool(const char* key, bool fallback);
  [[nodiscard]] std::vector<std::string> StrArray(const char* key);
  /// The {"fd": n} reference at `key`: returns n.
  [[nodiscard]] size_t FdRef(const char* key);
  /// The raw value (nullptr when absent), marked as known.
  [[nodiscard]] const nlohmann::json* Raw(const char* key);
  /// Throws for the first key that no accessor asked for.
  void Finish() const;

  /// "params.size" style path of `key`.
  [[nodiscard]] std::string Path(const char* key) const { return prefix_ + "." + key; }

 private:
  [[nodiscard]] const nlohmann::json* Find(const char* key);
  [[nodiscard]] uint64_t AsU64(const nlohmann::json& v, const char* key) const;

  const nlohmann::json& params_;
  std::string prefix_;
  std::set<std::string> known_;
};

/// The most segments one scatter list may have.
inline constexpr size_t kMaxSegments = 4096;

/// The scatter list at `key` of dma.map_fd: 1 to kMaxSegments objects
/// {offset, size, iova?}, sizes non-zero, everything 4 KiB aligned and not
/// wrapping, every segment naming its iova or none, named iovas not
/// overlapping each other. Throws ParamError naming the segment
/// ("params.segments[3].size: ..."). Empty when `key` is absent.
[[nodiscard]] std::vector<dma::ScatterPiece> ReadSegments(ParamReader& p, const char* key);

/// The most users (or groups) one share list or share request may name.
inline constexpr size_t kMaxShareEntries = service::ShareList::kMaxEntries;

/// A user given as a uid (a number, or a string of digits) or a user name,
/// looked up in the system's user database (getpwnam_r). Throws ParamError
/// "<path>: ..." for an unknown name or a value of another type.
[[nodiscard]] uid_t ReadUser(const std::string& path, const nlohmann::json& value);
/// A group given as a gid or a group name (getgrnam_r); as ReadUser.
[[nodiscard]] gid_t ReadGroup(const std::string& path, const nlohmann::json& value);
/// The optional "users" and "groups" arrays of `p` (each at most
/// kMaxShareEntries entries of ReadUser / ReadGroup).
[[nodiscard]] service::ShareList ReadShareList(ParamReader& p);

/// Throws ParamError unless `text` is a PCI address: [dddd:]bb:dd.f in hex.
void CheckBdf(const std::string& path, const std::string& text);
/// Throws ParamError "<path>: <why>" unless `value` is a multiple of `align`.
void CheckAligned(const std::string& path, uint64_t value, uint64_t align);
/// Throws ParamError when base + size wraps past 2^64.
void CheckNoWrap(const std::string& path, uint64_t base, uint64_t size);

}  // namespace vfiod::rpc
