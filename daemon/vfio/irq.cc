#include "vfio/irq.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cstdio>

namespace vfiod::vfio {

Result<IrqSet> IrqSet::Enable(std::shared_ptr<Device> device, uint32_t index, uint32_t count) {
  if (!device) {
    return Fail(EINVAL, "VFIO_DEVICE_SET_IRQS", "no device");
  }
  kernel::IrqInfo info = VFIOD_TRY(device->IrqInfo(index));
  std::string what = "IRQ index " + std::to_string(index) + " of " + device->name();
  if (count == 0 || count > info.count) {
    return Fail(EINVAL, "VFIO_DEVICE_SET_IRQS",
                what + " has " + std::to_string(info.count) + " vectors, asked for " +
                    std::to_string(count));
  }
  if (!info.eventfd()) {
    return Fail(EINVAL, "VFIO_DEVICE_SET_IRQS", what + " cannot signal an eventfd");
  }
  std::vector<UniqueFd> fds;
  std::vector<int> raw;
  for (uint32_t i = 0; i < count; ++i) {
    UniqueFd fd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    if (!fd) {
      return ErrnoError("eventfd");
    }
    raw.push_back(fd.get());
    fds.push_back(std::move(fd));
  }
  VFIOD_TRY(kernel::SetIrqEventfds(device->kernel(), device->fd(), index, 0, raw));
  return IrqSet(std::move(device), index, std::move(fds));
}

// Only std::bad_alloc, from building an error's text, can escape Disable():
// out of memory ends vfiod wherever it happens.
// NOLINTNEXTLINE(bugprone-exception-escape)
IrqSet& IrqSet::operator=(IrqSet&& other) noexcept {
  if (this != &other) {
    (void)Disable();
    device_ = std::move(other.device_);
    index_ = other.index_;
    eventfds_ = std::move(other.eventfds_);
  }
  return *this;
}

// NOLINTNEXTLINE(bugprone-exception-escape): as operator= above.
IrqSet::~IrqSet() {
  auto disabled = Disable();
  if (!disabled) {
    (void)std::fprintf(stderr, "vfiod: %s\n", disabled.error().message().c_str());
  }
}

Result<void> IrqSet::Disable() {
  if (!device_ || eventfds_.empty()) {
    return Ok();
  }
  VFIOD_TRY(kernel::DisableIrqs(device_->kernel(), device_->fd(), index_));
  eventfds_.clear();
  return Ok();
}

Result<void> IrqSet::Unmask(uint32_t vector) const {
  if (!device_ || vector >= eventfds_.size()) {
    return Fail(EINVAL, "VFIO_DEVICE_SET_IRQS", "unmask: no vector " + std::to_string(vector));
  }
  return kernel::UnmaskIrq(device_->kernel(), device_->fd(), index_, vector);
}

int IrqSet::eventfd(uint32_t vector) const {
  return vector < eventfds_.size() ? eventfds_[vector].get() : -1;
}

Result<uint64_t> IrqSet::TryConsume(uint32_t vector) const {
  int fd = eventfd(vector);
  if (fd < 0) {
    return Fail(EINVAL, "read IRQ eventfd", "no vector " + std::to_string(vector));
  }
  uint64_t n = 0;
  if (::read(fd, &n, sizeof(n)) != static_cast<ssize_t>(sizeof(n))) {
    return ErrnoError("read IRQ eventfd");  // EAGAIN: nothing pending
  }
  return n;
}

Result<uint64_t> IrqSet::Wait(uint32_t vector, std::chrono::milliseconds timeout) const {
  int fd = eventfd(vector);
  if (fd < 0) {
    return Fail(EINVAL, "wait for IRQ", "no vector " + std::to_string(vector));
  }
  pollfd p{.fd = fd, .events = POLLIN, .revents = 0};
  int ready = 0;
  do {
    ready = ::poll(&p, 1, static_cast<int>(timeout.count()));
  } while (ready < 0 && errno == EINTR);
  if (ready < 0) {
    return ErrnoError("poll IRQ eventfd");
  }
  if (ready == 0) {
    return Fail(ETIMEDOUT, "wait for IRQ",
                "vector " + std::to_string(vector) + " did not fire within " +
                    std::to_string(timeout.count()) + " ms");
  }
  return TryConsume(vector);
}

}  // namespace vfiod::vfio
