// Wrappers over the Kernel seam (after leveldb's EnvWrapper and
// FaultInjectionTestEnv): ForwardingKernel passes every call through;
// FaultInjectingKernel fails chosen calls with a chosen errno and counts calls.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "kernel/kernel.h"

namespace vfiod::kernel {

/// Forwards every call to `target`, which must outlive the wrapper.
class ForwardingKernel : public Kernel {
 public:
  explicit ForwardingKernel(Kernel& target) : target_(target) {}
  Result<int> open(const std::string& path, int flags) override;
  void close(int fd) override;
  Result<int> ioctl(int fd, unsigned long request, void* arg) override;
  Result<int> ioctl_value(int fd, unsigned long request, unsigned long value) override;
  Result<void*> mmap(void* addr, size_t len, int prot, int flags, int fd, off_t off) override;
  Result<void> munmap(void* addr, size_t len) override;
  Result<size_t> pread(int fd, void* buf, size_t len, off_t off) override;
  Result<size_t> pwrite(int fd, const void* buf, size_t len, off_t off) override;
  [[nodiscard]] std::string name() const override { return target_.name(); }
  [[nodiscard]] Kernel& target() const { return target_; }

 private:
  Kernel& target_;
};

/// The kinds of call the seam makes (ioctl covers ioctl and ioctl_value).
enum class KernelOp : uint8_t { kOpen, kClose, kIoctl, kMmap, kMunmap, kPread, kPwrite };

/// Which calls a fault applies to, and what they fail with.
struct Fault {
  KernelOp op = KernelOp::kIoctl;
  /// For kIoctl: only this request (nullopt: any ioctl).
  std::optional<unsigned long> request;
  /// The first matching call to fail, counting from 1 after the fault is armed.
  uint64_t nth = 1;
  /// How many consecutive matching calls fail from the nth (UINT64_MAX: all).
  uint64_t times = 1;
  int error = EIO;

  /// A fault on the ioctl named `name` ("VFIO_IOMMU_MAP_DMA"); aborts on an
  /// unknown name (a typo in a test is a bug).
  static Fault Ioctl(std::string_view name, uint64_t nth, int error);
  static Fault OnOp(KernelOp op, uint64_t nth, int error);
};

/// Fails the calls matched by its armed faults, without passing them on; all
/// other calls are forwarded. close() cannot fail (it is only counted).
/// Thread-safe: one mutex guards the faults and the counters.
class FaultInjectingKernel final : public ForwardingKernel {
 public:
  using ForwardingKernel::ForwardingKernel;

  /// Arms a fault; matching calls are counted from now on.
  void Arm(const Fault& fault);
  /// Disarms every fault.
  void Clear();
  /// Calls seen (failed ones included), by kind or by ioctl request name.
  [[nodiscard]] uint64_t Calls(KernelOp op) const;
  [[nodiscard]] uint64_t IoctlCalls(std::string_view name) const;
  /// Calls failed by injection so far.
  [[nodiscard]] uint64_t Injected() const;

  Result<int> open(const std::string& path, int flags) override;
  void close(int fd) override;
  Result<int> ioctl(int fd, unsigned long request, void* arg) override;
  Result<int> ioctl_value(int fd, unsigned long request, unsigned long value) override;
  Result<void*> mmap(void* addr, size_t len, int prot, int flags, int fd, off_t off) override;
  Result<void> munmap(void* addr, size_t len) override;
  Result<size_t> pread(int fd, void* buf, size_t len, off_t off) override;
  Result<size_t> pwrite(int fd, const void* buf, size_t len, off_t off) override;
  [[nodiscard]] std::string name() const override { return "faulty(" + target().name() + ")"; }

 private:
  struct Armed {
    Fault fault;
    uint64_t seen = 0;  // matching calls since armed
  };
  /// Counts the call; returns the errno to fail it with, or 0 to forward it.
  int Check(KernelOp op, std::optional<unsigned long> request);

  mutable std::mutex mu_;
  std::vector<Armed> armed_;                       // guarded by mu_
  std::map<KernelOp, uint64_t> calls_;             // guarded by mu_
  std::map<unsigned long, uint64_t> ioctl_calls_;  // guarded by mu_
  uint64_t injected_ = 0;                          // guarded by mu_
};

}  // namespace vfiod::kernel
