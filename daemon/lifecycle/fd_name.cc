#include "lifecycle/fd_name.h"

namespace vfiod::lifecycle {

bool IsValidFdName(std::string_view name) {
  if (name.empty() || name.size() > kMaxFdNameLength) {
    return false;
  }
  for (char c : name) {
    if (c < 0x20 || c > 0x7e || c == ':') {
      return false;
    }
  }
  return true;
}

}  // namespace vfiod::lifecycle
