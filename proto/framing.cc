#include "proto/framing.h"

#include <algorithm>
#include <utility>

namespace vfiod::wire {

void LineFramer::Attach(Frame& frame, std::vector<UniqueFd>& fds, bool truncated) {
  // A line gets the fds of one read only; a second batch for the same line
  // breaks the sending rule, so those are stray.
  if (truncated) {
    frame.fd_error = true;
  }
  if (frame.fds.empty()) {
    frame.fds = std::move(fds);
  } else {
    stray_fds_ += fds.size();
  }
  fds.clear();  // closes anything not adopted
}

void LineFramer::Feed(std::string_view bytes, std::vector<UniqueFd> fds, bool fds_truncated) {
  if (overflowed_) {
    stray_fds_ += fds.size();
    return;
  }
  bool had_fds = !fds.empty() || fds_truncated;
  // Offset in `bytes` of the last line starting in this read, or npos if the
  // read only continues the partial line.
  std::size_t target = partial_.line.empty() && !bytes.empty() ? 0 : std::string_view::npos;
  for (std::size_t nl = bytes.find('\n'); nl != std::string_view::npos && nl + 1 < bytes.size();
       nl = bytes.find('\n', nl + 1)) {
    target = nl + 1;
  }
  if (had_fds && target == std::string_view::npos) {
    stray_fds_ += fds.size();
    fds.clear();
    partial_.fd_error = partial_.fd_error || fds_truncated;
    had_fds = false;
  }
  std::size_t start = 0;
  while (start < bytes.size()) {
    std::size_t nl = bytes.find('\n', start);
    std::size_t end = nl == std::string_view::npos ? bytes.size() : nl;
    if (had_fds && start == target) {
      Attach(partial_, fds, fds_truncated);
    }
    partial_.line.append(bytes.substr(start, end - start));
    if (partial_.line.size() > max_frame_) {
      overflowed_ = true;
      partial_ = Frame{};
      return;
    }
    if (nl == std::string_view::npos) {
      break;
    }
    ready_.push_back(std::exchange(partial_, Frame{}));
    start = nl + 1;
  }
}

Frame LineFramer::Pop() {
  Frame f = std::move(ready_.front());
  ready_.pop_front();
  return f;
}

JsonOutline OutlineJson(std::string_view text) {
  JsonOutline out;
  std::size_t depth = 0;
  std::size_t top_commas = 0;
  bool in_string = false;
  bool escaped = false;
  bool array = false;       // the first non-blank character was '['
  bool array_empty = true;  // nothing but blanks inside it so far
  bool started = false;
  for (char c : text) {
    if (in_string) {
      if (escaped) {
        escaped = false;
      } else if (c == '\\') {
        escaped = true;
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    bool blank = c == ' ' || c == '\t' || c == '\r' || c == '\n';
    if (!started && !blank) {
      started = true;
      array = c == '[';
    }
    bool closes_outer = (c == ']' || c == '}') && depth == 1;
    if (array && depth >= 1 && !blank && !closes_outer) {
      array_empty = false;
    }
    if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      out.depth = std::max(out.depth, ++depth);
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;
    } else if (c == ',' && depth == 1) {
      ++top_commas;
    }
  }
  if (array && !array_empty) {
    out.array_elements = top_commas + 1;
  }
  return out;
}

std::size_t JsonNestingDepth(std::string_view text) { return OutlineJson(text).depth; }

}  // namespace vfiod::wire
