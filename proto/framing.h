// Line framing of the vfiod wire: one compact JSON value per '\n'-terminated
// line, with the fds of each recvmsg() attached to the line they belong to.
#pragma once

#include <cstddef>
#include <deque>
#include <string>
#include <string_view>
#include <vector>

#include "proto/unique_fd.h"

namespace vfiod::wire {

/// Deepest JSON nesting accepted on the wire; deeper input is a parse error,
/// so no recursive walk over a received value can exhaust the stack.
inline constexpr std::size_t kMaxJsonDepth = 64;

/// One complete line and the fds that came with it.
struct Frame {
  std::string line;           ///< without the terminating '\n'
  std::vector<UniqueFd> fds;  ///< in the order they were sent
  bool fd_error = false;      ///< control data was truncated: fds lost, fail the message
};

/// Splits a byte stream into frames and attaches fds (see fd_passing.h for
/// the rule: the fds of one read go to the last line that started in it).
/// Not thread-safe: one owner (a connection's strand, or the client).
class LineFramer {
 public:
  explicit LineFramer(std::size_t max_frame_bytes) : max_frame_(max_frame_bytes) {}

  /// Feeds the result of one read. Fds that no line started in this read can
  /// own are closed (counted in stray_fds()). After an overflow it drops input.
  void Feed(std::string_view bytes, std::vector<UniqueFd> fds, bool fds_truncated);

  /// True once a line grew past max_frame_bytes: the stream cannot be resynced
  /// cheaply and the owner is expected to report kFrameTooLarge and close.
  [[nodiscard]] bool overflowed() const { return overflowed_; }

  /// True when complete frames are waiting.
  [[nodiscard]] bool has_frame() const { return !ready_.empty(); }

  /// Removes and returns the oldest complete frame; has_frame() must be true.
  [[nodiscard]] Frame Pop();

  /// Bytes of the incomplete line held so far.
  [[nodiscard]] std::size_t partial_bytes() const { return partial_.line.size(); }

  /// Fds closed because no line could own them.
  [[nodiscard]] std::size_t stray_fds() const { return stray_fds_; }

 private:
  void Attach(Frame& frame, std::vector<UniqueFd>& fds, bool truncated);

  std::size_t max_frame_;
  Frame partial_;            // the line being received (may hold its fds already)
  std::deque<Frame> ready_;  // complete lines, oldest first
  bool overflowed_ = false;
  std::size_t stray_fds_ = 0;
};

/// What a cheap scan of a line's JSON text sees before it is parsed.
struct JsonOutline {
  /// The deepest nesting of arrays/objects, ignoring brackets inside strings.
  std::size_t depth = 0;
  /// When the text starts with '[': its top-level elements (commas at depth 1
  /// plus one, or 0 for "[]"); 0 otherwise. Exact for valid JSON.
  std::size_t array_elements = 0;
};

/// Scans `text` once, without building anything. Used before parsing to
/// refuse values deeper than kMaxJsonDepth and batches longer than a limit.
[[nodiscard]] JsonOutline OutlineJson(std::string_view text);

/// OutlineJson(text).depth.
[[nodiscard]] std::size_t JsonNestingDepth(std::string_view text);

}  // namespace vfiod::wire
