#include "vfioctl/progress.h"

#include <unistd.h>

#include <cstdio>
#include <string>

#include "vfioctl/sizes.h"

namespace vfiod::vfioctl {

namespace {
constexpr int kBarWidth = 30;
constexpr auto kMinInterval = std::chrono::milliseconds(100);
constexpr auto kFirstDrawAfter = std::chrono::milliseconds(500);
}  // namespace

bool ProgressBar::StderrIsTerminal() { return ::isatty(STDERR_FILENO) == 1; }

void ProgressBar::Update(uint64_t done, uint64_t total) {
  if (!enabled_ || total == 0) {
    return;
  }
  auto now = std::chrono::steady_clock::now();
  if (now - started_ < kFirstDrawAfter ||
      (drawn_ && done < total && now - last_draw_ < kMinInterval)) {
    return;
  }
  last_draw_ = now;
  const double fraction =
      done >= total ? 1.0 : static_cast<double>(done) / static_cast<double>(total);
  const int filled = static_cast<int>(fraction * kBarWidth);
  std::string bar(static_cast<size_t>(filled), '#');
  bar.append(static_cast<size_t>(kBarWidth - filled), '.');
  // A bar that cannot be drawn is no reason to fail the map: results ignored.
  (void)std::fprintf(stderr, "\r\033[Kmapping [%s] %3d%%  %s / %s", bar.c_str(),
                     static_cast<int>(fraction * 100), FormatSize(done).c_str(),
                     FormatSize(total).c_str());
  (void)std::fflush(stderr);
  drawn_ = true;
}

void ProgressBar::Finish() {
  if (drawn_) {
    (void)std::fprintf(stderr, "\r\033[K");  // as in Update: nothing to do on failure
    (void)std::fflush(stderr);
    drawn_ = false;
  }
}

}  // namespace vfiod::vfioctl
