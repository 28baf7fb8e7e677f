#include "proto/errors.h"

#include <cerrno>
#include <string>

namespace vfiod::wire {

std::string_view CodeMessage(int code) {
  switch (code) {
    case kParseError:
      return "Parse error";
    case kInvalidRequest:
      return "Invalid Request";
    case kMethodNotFound:
      return "Method not found";
    case kInvalidParams:
      return "Invalid params";
    case kInternalError:
      return "Internal error";
    case kKernelError:
      return "Kernel error";
    case kPermissionDenied:
      return "Permission denied";
    case kNotFound:
      return "Not found";
    case kQuotaExceeded:
      return "Quota exceeded";
    case kBusy:
      return "Busy";
    case kFrameTooLarge:
      return "Frame too large";
    case kFdError:
      return "File descriptor error";
    case kCancelled:
      return "Cancelled";
    case kConflict:
      return "Conflict";
    case kShuttingDown:
      return "Shutting down";
    case kClientTransport:
      return "Transport error";
    case kClientTimeout:
      return "Timeout";
    case kClientProtocol:
      return "Protocol error";
    default:
      return "Server error";
  }
}

std::string CodeName(int code) {
  std::string name(CodeMessage(code));
  for (char& c : name) {
    c = c == ' ' ? '_' : static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
  }
  return name;
}

std::string ErrnoName(int err) {
  // The errno values vfiod can plausibly report; strerrorname_np needs glibc 2.32
  // and Debian 12 has it, but a table keeps the wire names independent of libc.
  struct Named {
    int code;
    const char* name;
  };
#define VFIOD_ERRNO(e) \
  Named { e, #e }
  static constexpr Named kNames[] = {
      VFIOD_ERRNO(EPERM),       VFIOD_ERRNO(ENOENT),       VFIOD_ERRNO(ESRCH),
      VFIOD_ERRNO(EINTR),       VFIOD_ERRNO(EIO),          VFIOD_ERRNO(ENXIO),
      VFIOD_ERRNO(E2BIG),       VFIOD_ERRNO(EBADF),        VFIOD_ERRNO(EAGAIN),
      VFIOD_ERRNO(ENOMEM),      VFIOD_ERRNO(EACCES),       VFIOD_ERRNO(EFAULT),
      VFIOD_ERRNO(EBUSY),       VFIOD_ERRNO(EEXIST),       VFIOD_ERRNO(ENODEV),
      VFIOD_ERRNO(ENOTDIR),     VFIOD_ERRNO(EISDIR),       VFIOD_ERRNO(EINVAL),
      VFIOD_ERRNO(ENFILE),      VFIOD_ERRNO(EMFILE),       VFIOD_ERRNO(ENOTTY),
      VFIOD_ERRNO(EFBIG),       VFIOD_ERRNO(ENOSPC),       VFIOD_ERRNO(ESPIPE),
      VFIOD_ERRNO(EROFS),       VFIOD_ERRNO(EPIPE),        VFIOD_ERRNO(ERANGE),
      VFIOD_ERRNO(EDEADLK),     VFIOD_ERRNO(ENAMETOOLONG), VFIOD_ERRNO(ENOSYS),
      VFIOD_ERRNO(ENOTEMPTY),   VFIOD_ERRNO(ELOOP),        VFIOD_ERRNO(ENODATA),
      VFIOD_ERRNO(EOVERFLOW),   VFIOD_ERRNO(EBADMSG),      VFIOD_ERRNO(EPROTO),
      VFIOD_ERRNO(EMSGSIZE),    VFIOD_ERRNO(ENOTSUP),      VFIOD_ERRNO(EADDRINUSE),
      VFIOD_ERRNO(ECONNRESET),  VFIOD_ERRNO(ENOBUFS),      VFIOD_ERRNO(ENOTCONN),
      VFIOD_ERRNO(ETIMEDOUT),   VFIOD_ERRNO(ECONNREFUSED), VFIOD_ERRNO(EALREADY),
      VFIOD_ERRNO(EINPROGRESS), VFIOD_ERRNO(ECANCELED),    VFIOD_ERRNO(EOWNERDEAD),
      VFIOD_ERRNO(EHWPOISON),   VFIOD_ERRNO(EDQUOT),
  };
#undef VFIOD_ERRNO
  for (const Named& named : kNames) {
    if (named.code == err) {
      return named.name;
    }
  }
  return "E?" + std::to_string(err);
}

nlohmann::json ErrorData(const Error& err) {
  nlohmann::json data = nlohmann::json::object();
  if (err.code != 0) {
    data["errno"] = err.code;
    data["errno_name"] = ErrnoName(err.code);
  }
  std::string detail = err.op;
  if (!err.detail.empty()) {
    detail += detail.empty() ? err.detail : ": " + err.detail;
  }
  data["detail"] = detail;
  return data;
}

}  // namespace vfiod::wire
