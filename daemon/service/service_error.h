// The service's error currency: an Error plus what kind of refusal it is, so
// the RPC layer can pick the right JSON-RPC code without parsing messages.
#pragma once

#include <expected>
#include <string>
#include <utility>

#include "proto/result.h"

namespace vfiod::service {

/// Why a service call failed. Everything that came from below the service
/// (kernel, vfio, dma) is kKernel and carries the errno of the failing call.
enum class ErrorKind {
  kKernel,         ///< a system call failed; error.code is its errno
  kInvalidParams,  ///< the request itself is malformed (size 0, bad BDF...)
  kNotFound,       ///< no such device/container/mapping visible to the caller
  kPermission,     ///< policy refused the caller
  kQuota,          ///< the caller's quota would be exceeded
  kBusy,           ///< the resource is in use (group attached elsewhere, name taken)
  kBadFd,          ///< the fd the client passed cannot be used (not open, wrong file, too short)
};

/// A failure of a service call. Implicitly built from a lower layer's Error
/// (as kKernel), so VFIOD_TRY works on Result-valued calls inside the service.
struct ServiceError {
  ErrorKind kind = ErrorKind::kKernel;
  Error error;

  ServiceError() = default;
  ServiceError(Error e) : error(std::move(e)) {}  // NOLINT(google-explicit-constructor)
  ServiceError(ErrorKind k, Error e) : kind(k), error(std::move(e)) {}
};

template <class T = void>
using SResult = std::expected<T, ServiceError>;

/// A refusal of kind `kind`; `code` is the errno reported with it.
[[nodiscard]] inline std::unexpected<ServiceError> Refuse(ErrorKind kind, int code, std::string op,
                                                          std::string detail) {
  return std::unexpected<ServiceError>(
      ServiceError(kind, Error{code, std::move(op), std::move(detail)}));
}

}  // namespace vfiod::service
