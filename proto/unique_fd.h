// One owner per file descriptor.
#pragma once

#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <utility>

namespace vfiod {

/// Move-only owner of a plain OS file descriptor (always opened O_CLOEXEC by
/// the code that creates it). Destruction closes it, keeping errno intact.
/// A close that fails with EBADF means two owners closed the same fd: that is
/// a bug, and it aborts rather than letting the fd number be reused silently.
class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  UniqueFd(UniqueFd&& other) noexcept : fd_(other.release()) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept {
    if (this != &other) {
      reset(other.release());
    }
    return *this;
  }
  ~UniqueFd() { reset(); }

  [[nodiscard]] int get() const { return fd_; }
  [[nodiscard]] bool valid() const { return fd_ >= 0; }
  explicit operator bool() const { return valid(); }

  /// Gives up ownership without closing.
  [[nodiscard]] int release() { return std::exchange(fd_, -1); }

  /// Closes the current fd (if any) and owns `fd` instead.
  void reset(int fd = -1) {
    int old = std::exchange(fd_, fd);
    if (old >= 0) {
      CloseOrDie(old);
    }
  }

  /// Closes `fd`, preserving errno; aborts on EBADF (a double close).
  static void CloseOrDie(int fd) {
    int saved = errno;
    if (::close(fd) < 0 && errno == EBADF) {
      (void)std::fprintf(stderr, "vfiod: close(%d): EBADF, fd closed twice\n", fd);
      std::abort();
    }
    errno = saved;
  }

 private:
  int fd_ = -1;
};

}  // namespace vfiod
