// The kernel seam: every system call vfiod makes on VFIO objects goes through
// one Kernel. LinuxKernel makes the real calls; ModelKernel is an in-memory
// model of type1v2 VFIO; FaultInjectingKernel wraps either to fail chosen calls.
// The seam is exactly as wide as the calls used, and is chosen at run time, so
// the same binary runs on the real kernel or on the model.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>

#include "proto/result.h"

namespace vfiod::kernel {

/// Contracts are those of the syscalls of the same name; failures come back as
/// Error{errno, op}. Implementations must be thread-safe: the daemon issues
/// calls from worker threads.
class Kernel {
 public:
  Kernel() = default;
  virtual ~Kernel() = default;
  Kernel(const Kernel&) = delete;
  Kernel& operator=(const Kernel&) = delete;
  Kernel(Kernel&&) = delete;
  Kernel& operator=(Kernel&&) = delete;

  /// open(2) with O_CLOEXEC added. Returns the new fd, owned by the caller,
  /// who must release it with close() on this same Kernel (see KernelFd).
  virtual Result<int> open(const std::string& path, int flags) = 0;
  /// close(2). Aborts on EBADF (a double close is a bug).
  virtual void close(int fd) = 0;
  /// ioctl(2) with a pointer argument. Returns the ioctl's non-negative value.
  virtual Result<int> ioctl(int fd, unsigned long request, void* arg) = 0;
  /// ioctl(2) with an integer argument (VFIO_SET_IOMMU, VFIO_CHECK_EXTENSION).
  virtual Result<int> ioctl_value(int fd, unsigned long request, unsigned long value) = 0;
  /// mmap(2); `addr` is a hint unless `flags` holds MAP_FIXED.
  virtual Result<void*> mmap(void* addr, size_t len, int prot, int flags, int fd, off_t off) = 0;
  /// munmap(2).
  virtual Result<void> munmap(void* addr, size_t len) = 0;
  /// pread(2)/pwrite(2); a short transfer is returned as a count, not an error.
  virtual Result<size_t> pread(int fd, void* buf, size_t len, off_t off) = 0;
  virtual Result<size_t> pwrite(int fd, const void* buf, size_t len, off_t off) = 0;
  /// A short name for logs and status ("linux", "model", "faulty(model)").
  [[nodiscard]] virtual std::string name() const = 0;
};

/// The real kernel.
std::unique_ptr<Kernel> MakeLinuxKernel();

/// Move-only owner of an fd that came from Kernel::open() (or an ioctl that
/// returns an fd, such as VFIO_GROUP_GET_DEVICE_FD); closes it through the
/// same Kernel, so the model sees every close just as the real kernel does.
class KernelFd {
 public:
  KernelFd() = default;
  KernelFd(Kernel* kernel, int fd) : kernel_(kernel), fd_(fd) {}
  KernelFd(const KernelFd&) = delete;
  KernelFd& operator=(const KernelFd&) = delete;
  KernelFd(KernelFd&& other) noexcept : kernel_(other.kernel_), fd_(std::exchange(other.fd_, -1)) {}
  KernelFd& operator=(KernelFd&& other) noexcept {
    if (this != &other) {
      reset();
      kernel_ = other.kernel_;
      fd_ = std::exchange(other.fd_, -1);
    }
    return *this;
  }
  ~KernelFd() { reset(); }

  [[nodiscard]] int get() const { return fd_; }
  [[nodiscard]] bool valid() const { return fd_ >= 0; }
  [[nodiscard]] Kernel* kernel() const { return kernel_; }
  /// Gives the fd up without closing it: the caller owns it now (-1 if none).
  [[nodiscard]] int release() { return std::exchange(fd_, -1); }
  void reset() {
    if (fd_ >= 0) {
      kernel_->close(std::exchange(fd_, -1));
    }
  }

 private:
  Kernel* kernel_ = nullptr;
  int fd_ = -1;
};

}  // namespace vfiod::kernel
