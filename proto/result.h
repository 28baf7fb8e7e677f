// The error currency of vfiod: no exceptions cross a layer boundary.
//
// A fallible function returns Result<T>: either a T or an Error carrying the
// errno, the operation that failed and a human detail. errno becomes an Error
// in exactly one place, ErrnoError(), so the translation is uniform.
#pragma once

#include <cerrno>
#include <expected>
#include <string>
#include <utility>

namespace vfiod {

/// What went wrong: `code` is a positive errno value (EINVAL, EEXIST, ...),
/// `op` names the operation ("VFIO_IOMMU_MAP_DMA", "open /dev/vfio/12"),
/// `detail` says why in words a user can act on (may be empty).
struct Error {
  int code = 0;
  std::string op;
  std::string detail;

  /// "op: strerror(code) (detail)", for logs and one-line CLI messages.
  [[nodiscard]] std::string message() const;
};

template <class T = void>
using Result = std::expected<T, Error>;

/// The one place errno turns into an Error. `err` defaults to the current errno.
[[nodiscard]] std::unexpected<Error> ErrnoError(std::string op, int err = errno,
                                                std::string detail = {});

/// An error that did not come from a failing syscall (argument checks etc.).
[[nodiscard]] inline std::unexpected<Error> Fail(int code, std::string op,
                                                 std::string detail = {}) {
  return std::unexpected<Error>(Error{code, std::move(op), std::move(detail)});
}

/// Success for Result<void>.
[[nodiscard]] inline Result<void> Ok() { return {}; }

}  // namespace vfiod

/// Propagates the error of a Result-valued expression, else yields its value.
/// Usage: auto fd = VFIOD_TRY(kernel.open(path, O_RDWR));
#define VFIOD_TRY(expr)                                             \
  __extension__({                                                   \
    auto vfiod_try_result_ = (expr);                                \
    if (!vfiod_try_result_) {                                       \
      return std::unexpected(std::move(vfiod_try_result_).error()); \
    }                                                               \
    std::move(vfiod_try_result_).value();                           \
  })
