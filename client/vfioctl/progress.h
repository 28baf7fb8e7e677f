// A one-line progress bar on stderr for long DMA maps, fed by the daemon's
// "dma.progress" notifications. Draws only when enabled (stderr is a
// terminal and the user did not turn it off), so logs and pipes stay clean.
#pragma once

#include <chrono>
#include <cstdint>

namespace vfiod::vfioctl {

class ProgressBar {
 public:
  explicit ProgressBar(bool enabled) : enabled_(enabled) {}
  ~ProgressBar() { Finish(); }
  ProgressBar(const ProgressBar&) = delete;
  ProgressBar& operator=(const ProgressBar&) = delete;
  ProgressBar(ProgressBar&&) = delete;
  ProgressBar& operator=(ProgressBar&&) = delete;

  /// Redraws the bar for `done` of `total` bytes: only once the map has taken
  /// longer than half a second (short maps print nothing), then at most ten
  /// times a second.
  void Update(uint64_t done, uint64_t total);

  /// Clears the bar's line, if one was drawn.
  void Finish();

  [[nodiscard]] bool enabled() const { return enabled_; }

  /// True when stderr is a terminal.
  [[nodiscard]] static bool StderrIsTerminal();

 private:
  bool enabled_;
  bool drawn_ = false;
  const std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();
  std::chrono::steady_clock::time_point last_draw_{};
};

}  // namespace vfiod::vfioctl
