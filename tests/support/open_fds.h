// Leak checks for tests: how many fds the process holds open.
#pragma once

#include <dirent.h>

namespace vfiod::testing {

/// Entries of /proc/self/fd, the directory's own fd included: compare two
/// counts taken the same way, never a count with a fixed number.
inline int CountOpenFds() {
  int count = 0;
  DIR* dir = ::opendir("/proc/self/fd");
  while (dirent* entry = ::readdir(dir)) {
    count += entry->d_name[0] != '.' ? 1 : 0;
  }
  ::closedir(dir);
  return count;
}

}  // namespace vfiod::testing
