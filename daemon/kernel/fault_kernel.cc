#include "kernel/fault_kernel.h"

#include <cstdio>
#include <cstdlib>

#include "kernel/ioctl_names.h"

namespace vfiod::kernel {
namespace {

const char* OpName(KernelOp op) {
  switch (op) {
    case KernelOp::kOpen:
      return "open";
    case KernelOp::kClose:
      return "close";
    case KernelOp::kIoctl:
      return "ioctl";
    case KernelOp::kMmap:
      return "mmap";
    case KernelOp::kMunmap:
      return "munmap";
    case KernelOp::kPread:
      return "pread";
    case KernelOp::kPwrite:
      return "pwrite";
  }
  return "?";
}

std::unexpected<Error> InjectedError(const std::string& op, int error) {
  return ErrnoError(op, error, "injected fault");
}

}  // namespace

// --- ForwardingKernel -----------------------------------------------------------

Result<int> ForwardingKernel::open(const std::string& path, int flags) {
  return target_.open(path, flags);
}
void ForwardingKernel::close(int fd) { target_.close(fd); }
Result<int> ForwardingKernel::ioctl(int fd, unsigned long request, void* arg) {
  return target_.ioctl(fd, request, arg);
}
Result<int> ForwardingKernel::ioctl_value(int fd, unsigned long request, unsigned long value) {
  return target_.ioctl_value(fd, request, value);
}
Result<void*> ForwardingKernel::mmap(void* addr, size_t len, int prot, int flags, int fd,
                                     off_t off) {
  return target_.mmap(addr, len, prot, flags, fd, off);
}
Result<void> ForwardingKernel::munmap(void* addr, size_t len) { return target_.munmap(addr, len); }
Result<size_t> ForwardingKernel::pread(int fd, void* buf, size_t len, off_t off) {
  return target_.pread(fd, buf, len, off);
}
Result<size_t> ForwardingKernel::pwrite(int fd, const void* buf, size_t len, off_t off) {
  return target_.pwrite(fd, buf, len, off);
}

// --- Fault ---------------------------------------------------------------------------

Fault Fault::Ioctl(std::string_view name, uint64_t nth, int error) {
  std::optional<unsigned long> request = IoctlRequestByName(name);
  if (!request) {
    // About to abort: a failed message changes nothing.
    (void)std::fprintf(stderr, "vfiod: Fault::Ioctl: unknown ioctl %.*s\n",
                       static_cast<int>(name.size()), name.data());
    std::abort();
  }
  return Fault{KernelOp::kIoctl, request, nth, 1, error};
}

Fault Fault::OnOp(KernelOp op, uint64_t nth, int error) {
  return Fault{op, std::nullopt, nth, 1, error};
}

// --- FaultInjectingKernel ------------------------------------------------------------

void FaultInjectingKernel::Arm(const Fault& fault) {
  std::lock_guard lock(mu_);
  armed_.push_back({fault, 0});
}

void FaultInjectingKernel::Clear() {
  std::lock_guard lock(mu_);
  armed_.clear();
}

uint64_t FaultInjectingKernel::Calls(KernelOp op) const {
  std::lock_guard lock(mu_);
  auto it = calls_.find(op);
  return it == calls_.end() ? 0 : it->second;
}

uint64_t FaultInjectingKernel::IoctlCalls(std::string_view name) const {
  std::optional<unsigned long> request = IoctlRequestByName(name);
  std::lock_guard lock(mu_);
  auto it = request ? ioctl_calls_.find(*request) : ioctl_calls_.end();
  return it == ioctl_calls_.end() ? 0 : it->second;
}

uint64_t FaultInjectingKernel::Injected() const {
  std::lock_guard lock(mu_);
  return injected_;
}

int FaultInjectingKernel::Check(KernelOp op, std::optional<unsigned long> request) {
  std::lock_guard lock(mu_);
  ++calls_[op];
  if (request) {
    ++ioctl_calls_[*request];
  }
  int error = 0;
  for (Armed& a : armed_) {
    const Fault& f = a.fault;
    if (f.op != op || (f.request && f.request != request)) {
      continue;
    }
    uint64_t n = ++a.seen;
    bool hit = n >= f.nth && n - f.nth < f.times;
    if (hit && error == 0) {
      error = f.error;
    }
  }
  if (error != 0) {
    ++injected_;
  }
  return error;
}

Result<int> FaultInjectingKernel::open(const std::string& path, int flags) {
  if (int e = Check(KernelOp::kOpen, std::nullopt)) {
    return InjectedError("open " + path, e);
  }
  return ForwardingKernel::open(path, flags);
}

void FaultInjectingKernel::close(int fd) {
  Check(KernelOp::kClose, std::nullopt);  // counted; a close cannot fail
  ForwardingKernel::close(fd);
}

Result<int> FaultInjectingKernel::ioctl(int fd, unsigned long request, void* arg) {
  if (int e = Check(KernelOp::kIoctl, request)) {
    return InjectedError(IoctlName(request), e);
  }
  return ForwardingKernel::ioctl(fd, request, arg);
}

Result<int> FaultInjectingKernel::ioctl_value(int fd, unsigned long request, unsigned long value) {
  if (int e = Check(KernelOp::kIoctl, request)) {
    return InjectedError(IoctlName(request), e);
  }
  return ForwardingKernel::ioctl_value(fd, request, value);
}

Result<void*> FaultInjectingKernel::mmap(void* addr, size_t len, int prot, int flags, int fd,
                                         off_t off) {
  if (int e = Check(KernelOp::kMmap, std::nullopt)) {
    return InjectedError(OpName(KernelOp::kMmap), e);
  }
  return ForwardingKernel::mmap(addr, len, prot, flags, fd, off);
}

Result<void> FaultInjectingKernel::munmap(void* addr, size_t len) {
  if (int e = Check(KernelOp::kMunmap, std::nullopt)) {
    return InjectedError(OpName(KernelOp::kMunmap), e);
  }
  return ForwardingKernel::munmap(addr, len);
}

Result<size_t> FaultInjectingKernel::pread(int fd, void* buf, size_t len, off_t off) {
  if (int e = Check(KernelOp::kPread, std::nullopt)) {
    return InjectedError(OpName(KernelOp::kPread), e);
  }
  return ForwardingKernel::pread(fd, buf, len, off);
}

Result<size_t> FaultInjectingKernel::pwrite(int fd, const void* buf, size_t len, off_t off) {
  if (int e = Check(KernelOp::kPwrite, std::nullopt)) {
    return InjectedError(OpName(KernelOp::kPwrite), e);
  }
  return ForwardingKernel::pwrite(fd, buf, len, off);
}

}  // namespace vfiod::kernel
