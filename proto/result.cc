#include "proto/result.h"

#include <cstring>

namespace vfiod {

std::string Error::message() const {
  std::string out = op.empty() ? std::string("error") : op;
  out += ": ";
  out += code != 0 ? std::strerror(code) : "failed";
  if (!detail.empty()) {
    out += " (" + detail + ")";
  }
  return out;
}

std::unexpected<Error> ErrnoError(std::string op, int err, std::string detail) {
  return std::unexpected<Error>(Error{err, std::move(op), std::move(detail)});
}

}  // namespace vfiod
