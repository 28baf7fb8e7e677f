// LinuxKernel: the Kernel seam over the real system calls.
#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>

#include "kernel/ioctl_names.h"
#include "kernel/kernel.h"
#include "proto/unique_fd.h"

namespace vfiod::kernel {
namespace {

/// Stateless, hence thread-safe: every method is one system call.
class LinuxKernel final : public Kernel {
 public:
  Result<int> open(const std::string& path, int flags) override {
    int fd = ::open(path.c_str(), flags | O_CLOEXEC);
    if (fd < 0) {
      return ErrnoError("open " + path);
    }
    return fd;
  }

  void close(int fd) override { UniqueFd::CloseOrDie(fd); }

  Result<int> ioctl(int fd, unsigned long request, void* arg) override {
    int ret = ::ioctl(fd, request, arg);
    if (ret < 0) {
      return ErrnoError(IoctlName(request));
    }
    return ret;
  }

  Result<int> ioctl_value(int fd, unsigned long request, unsigned long value) override {
    int ret = ::ioctl(fd, request, value);
    if (ret < 0) {
      return ErrnoError(IoctlName(request));
    }
    return ret;
  }

  Result<void*> mmap(void* addr, size_t len, int prot, int flags, int fd, off_t off) override {
    void* p = ::mmap(addr, len, prot, flags, fd, off);
    if (p == MAP_FAILED) {
      return ErrnoError("mmap");
    }
    return p;
  }

  Result<void> munmap(void* addr, size_t len) override {
    if (::munmap(addr, len) < 0) {
      return ErrnoError("munmap");
    }
    return Ok();
  }

  Result<size_t> pread(int fd, void* buf, size_t len, off_t off) override {
    ssize_t n = ::pread(fd, buf, len, off);
    if (n < 0) {
      return ErrnoError("pread");
    }
    return static_cast<size_t>(n);
  }

  Result<size_t> pwrite(int fd, const void* buf, size_t len, off_t off) override {
    ssize_t n = ::pwrite(fd, buf, len, off);
    if (n < 0) {
      return ErrnoError("pwrite");
    }
    return static_cast<size_t>(n);
  }

  [[nodiscard]] std::string name() const override { return "linux"; }
};

}  // namespace

std::unique_ptr<Kernel> MakeLinuxKernel() { return std::make_unique<LinuxKernel>(); }

}  // namespace vfiod::kernel
