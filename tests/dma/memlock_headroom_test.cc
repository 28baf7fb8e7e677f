// CheckMemlockHeadroom on the host: with the soft RLIMIT_MEMLOCK lowered to
// what is locked already, a pin fits only when the process holds
// CAP_IPC_LOCK (as the kernel's accounting has it), and the check's answer
// agrees with the capability set /proc reports.
#include <gtest/gtest.h>
#include <sys/resource.h>

#include <fstream>
#include <sstream>
#include <string>

#include "dma/backing.h"

namespace vfiod::dma {
namespace {

constexpr int kCapIpcLock = 14;

// CAP_IPC_LOCK in the effective set, from /proc/self/status (independently
// of how the engine asks).
bool ProcSaysIpcLock() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.starts_with("CapEff:")) {
      std::istringstream rest(line.substr(7));
      std::string hex;
      rest >> hex;
      return ((std::stoull(hex, nullptr, 16) >> kCapIpcLock) & 1U) != 0;
    }
  }
  ADD_FAILURE() << "no CapEff line";
  return false;
}

// Restores the soft limit on scope exit.
class SoftLimit {
 public:
  explicit SoftLimit(rlim_t soft) {
    EXPECT_EQ(::getrlimit(RLIMIT_MEMLOCK, &saved_), 0);
    struct rlimit lowered = saved_;
    lowered.rlim_cur = soft;
    EXPECT_EQ(::setrlimit(RLIMIT_MEMLOCK, &lowered), 0);
  }
  ~SoftLimit() { EXPECT_EQ(::setrlimit(RLIMIT_MEMLOCK, &saved_), 0); }
  SoftLimit(const SoftLimit&) = delete;
  SoftLimit& operator=(const SoftLimit&) = delete;

 private:
  struct rlimit saved_ {};
};

TEST(MemlockHeadroom, AtTheLimitOnlyCapIpcLockLetsAPinThrough) {
  const uint64_t locked = LockedBytes().value();
  SoftLimit at_limit(locked);
  auto fits = CheckMemlockHeadroom(4096);
  if (ProcSaysIpcLock()) {
    EXPECT_TRUE(fits) << fits.error().message();
  } else {
    ASSERT_FALSE(fits);
    EXPECT_EQ(fits.error().code, ENOMEM);
  }
}

}  // namespace
}  // namespace vfiod::dma
