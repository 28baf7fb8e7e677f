// Locked-memory accounting: VFIO pins count against RLIMIT_MEMLOCK (VmLck)
// unless the process holds CAP_IPC_LOCK.
#include <linux/capability.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <array>
#include <fstream>
#include <sstream>
#include <string>

#include "dma/backing.h"

namespace vfiod::dma {
namespace {

// The value of one "Name:\tvalue" line of /proc/self/status, or "" if absent.
std::string StatusField(const std::string& name) {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.starts_with(name + ":")) {
      std::istringstream rest(line.substr(name.size() + 1));
      std::string value;
      rest >> value;
      return value;
    }
  }
  return {};
}

// One capget(2): this runs before every map, where reading and parsing
// /proc/self/status would cost more than a small MAP_DMA.
bool HasIpcLock() {
  __user_cap_header_struct header{.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
  std::array<__user_cap_data_struct, _LINUX_CAPABILITY_U32S_3> data{};
  if (::syscall(SYS_capget, &header, data.data()) != 0) {
    return false;
  }
  static_assert(CAP_IPC_LOCK < 32);
  return ((data[0].effective >> CAP_IPC_LOCK) & 1U) != 0;
}

}  // namespace

Result<uint64_t> LockedBytes() {
  const std::string kb = StatusField("VmLck");
  if (kb.empty()) {
    return Fail(ENOENT, "read VmLck", "no VmLck line in /proc/self/status");
  }
  return std::stoull(kb) << 10;
}

Result<void> CheckMemlockHeadroom(uint64_t bytes) {
  struct rlimit limit {};
  if (::getrlimit(RLIMIT_MEMLOCK, &limit) != 0) {
    return ErrnoError("getrlimit(RLIMIT_MEMLOCK)");
  }
  if (limit.rlim_cur == RLIM_INFINITY || HasIpcLock()) {
    return Ok();
  }
  const uint64_t locked = VFIOD_TRY(LockedBytes());
  if (locked > limit.rlim_cur || bytes > limit.rlim_cur - locked) {
    return Fail(ENOMEM, "check RLIMIT_MEMLOCK",
                "pinning " + std::to_string(bytes) + " bytes would exceed RLIMIT_MEMLOCK (" +
                    std::to_string(limit.rlim_cur) + " bytes, " + std::to_string(locked) +
                    " locked already): raise LimitMEMLOCK= or grant CAP_IPC_LOCK");
  }
  return Ok();
}

}  // namespace vfiod::dma
