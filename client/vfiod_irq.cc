#include "client/vfiod_irq.h"

#include <linux/vfio.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <string>
#include <utility>

namespace vfiod::client {

static_assert(static_cast<uint32_t>(IrqIndex::kIntx) == VFIO_PCI_INTX_IRQ_INDEX);
static_assert(static_cast<uint32_t>(IrqIndex::kMsi) == VFIO_PCI_MSI_IRQ_INDEX);
static_assert(static_cast<uint32_t>(IrqIndex::kMsix) == VFIO_PCI_MSIX_IRQ_INDEX);
static_assert(VFIO_IRQ_INFO_EVENTFD == 1u && VFIO_IRQ_INFO_AUTOMASKED == 4u);

namespace {

class LinuxIrqOs final : public IrqOs {
 public:
  int Ioctl(int fd, unsigned long request, void* arg) override { return ::ioctl(fd, request, arg); }
  int Poll(pollfd* fds, nfds_t count, int timeout_ms) override {
    return ::poll(fds, count, timeout_ms);
  }
  ssize_t Read(int fd, void* buf, size_t size) override { return ::read(fd, buf, size); }
};

bool KnownIndex(IrqIndex index) {
  return index == IrqIndex::kIntx || index == IrqIndex::kMsi || index == IrqIndex::kMsix;
}

std::string Vector(IrqIndex index, uint32_t vector) {
  return std::string(IrqIndexName(index)) + " vector " + std::to_string(vector);
}

/// One VFIO_DEVICE_SET_IRQS: `flags` for vectors [start, start + count) of
/// `index`, with `fds` as the data when given (DATA_EVENTFD).
Result<void> SetIrqs(IrqOs& os, int device_fd, IrqIndex index, uint32_t flags, uint32_t start,
                     uint32_t count, const std::vector<int32_t>& fds, const std::string& what) {
  std::vector<uint8_t> buf(sizeof(vfio_irq_set) + fds.size() * sizeof(int32_t));
  vfio_irq_set head{};
  head.argsz = static_cast<uint32_t>(buf.size());
  head.flags = flags;
  head.index = static_cast<uint32_t>(index);
  head.start = start;
  head.count = count;
  std::memcpy(buf.data(), &head, sizeof(head));
  if (!fds.empty()) {
    std::memcpy(buf.data() + sizeof(head), fds.data(), fds.size() * sizeof(int32_t));
  }
  if (os.Ioctl(device_fd, VFIO_DEVICE_SET_IRQS, buf.data()) < 0) {
    return ErrnoError("VFIO_DEVICE_SET_IRQS", errno, what);
  }
  return Ok();
}

}  // namespace

const char* IrqIndexName(IrqIndex index) {
  switch (index) {
    case IrqIndex::kIntx:
      return "INTx";
    case IrqIndex::kMsi:
      return "MSI";
    case IrqIndex::kMsix:
      return "MSI-X";
  }
  return "unknown IRQ index";
}

IrqOs& SystemIrqOs() {
  static auto* os = new LinuxIrqOs();  // never destroyed: usable from any destructor
  return *os;
}

Result<IrqInfo> GetIrqInfo(int device_fd, IrqIndex index, IrqOs& os) {
  if (!KnownIndex(index)) {
    return Fail(EINVAL, "VFIO_DEVICE_GET_IRQ_INFO", "not an INTx, MSI or MSI-X index");
  }
  vfio_irq_info info{};
  info.argsz = sizeof(info);
  info.index = static_cast<uint32_t>(index);
  if (os.Ioctl(device_fd, VFIO_DEVICE_GET_IRQ_INFO, &info) < 0) {
    return ErrnoError("VFIO_DEVICE_GET_IRQ_INFO", errno, IrqIndexName(index));
  }
  return IrqInfo{index, info.flags, info.count};
}

Result<IrqSet> IrqSet::Enable(int device_fd, IrqIndex index, uint32_t count, IrqOs& os) {
  const IrqInfo info = VFIOD_TRY(GetIrqInfo(device_fd, index, os));
  const std::string name = IrqIndexName(index);
  if (count == 0 || count > info.count) {
    return Fail(EINVAL, "enable " + name,
                "the device offers " + std::to_string(info.count) + " " + name +
                    " vectors, asked for " + std::to_string(count));
  }
  if (!info.eventfd()) {
    return Fail(ENOTSUP, "enable " + name, "the index cannot signal an eventfd");
  }
  std::vector<UniqueFd> owned;
  std::vector<int32_t> fds;
  for (uint32_t i = 0; i < count; ++i) {
    UniqueFd fd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    if (!fd) {
      return ErrnoError("eventfd");
    }
    fds.push_back(fd.get());
    owned.push_back(std::move(fd));
  }
  VFIOD_TRY(SetIrqs(os, device_fd, index, VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER,
                    0, count, fds, "enable " + std::to_string(count) + " " + name + " vectors"));
  return IrqSet(device_fd, info, std::move(owned), os);
}

IrqSet::IrqSet(IrqSet&& other) noexcept
    : os_(other.os_),
      device_fd_(std::exchange(other.device_fd_, -1)),
      index_(other.index_),
      info_(other.info_),
      eventfds_(std::move(other.eventfds_)) {
  other.eventfds_.clear();
}

IrqSet& IrqSet::operator=(IrqSet&& other) noexcept {
  if (this != &other) {
    {
      IrqSet old(std::move(*this));  // disabled here, by its destructor
    }
    os_ = other.os_;
    device_fd_ = std::exchange(other.device_fd_, -1);
    index_ = other.index_;
    info_ = other.info_;
    eventfds_ = std::move(other.eventfds_);
    other.eventfds_.clear();
  }
  return *this;
}

IrqSet::~IrqSet() {
  const int err = DisableNow();
  if (err != 0) {
    (void)std::fprintf(stderr, "vfiod client: VFIO_DEVICE_SET_IRQS: disable %s: %s\n",
                       IrqIndexName(index_), std::strerror(err));
  }
}

int IrqSet::DisableNow() noexcept {
  if (eventfds_.empty()) {
    return 0;
  }
  vfio_irq_set off{};  // no data: no allocation, so this cannot throw
  off.argsz = sizeof(off);
  off.flags = VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER;
  off.index = static_cast<uint32_t>(index_);
  off.start = 0;
  off.count = 0;
  if (os_->Ioctl(device_fd_, VFIO_DEVICE_SET_IRQS, &off) < 0) {
    return errno;  // the kernel may still signal them: the eventfds stay open
  }
  eventfds_.clear();  // the kernel let go of them: now they may close
  return 0;
}

int IrqSet::eventfd(uint32_t vector) const {
  return vector < eventfds_.size() ? eventfds_[vector].get() : -1;
}

Result<int> IrqSet::VectorFd(uint32_t vector, const char* op) const {
  if (vector >= eventfds_.size()) {
    return Fail(
        EINVAL, op,
        enabled() ? "no " + Vector(index_, vector) + " in this set" : "the set is disabled");
  }
  return eventfds_[vector].get();
}

Result<uint64_t> IrqSet::TryConsume(uint32_t vector) {
  const int fd = VFIOD_TRY(VectorFd(vector, "consume IRQ"));
  uint64_t n = 0;
  ssize_t got = 0;
  do {
    got = os_->Read(fd, &n, sizeof(n));
  } while (got < 0 && errno == EINTR);
  if (got < 0) {
    return ErrnoError("read IRQ eventfd", errno, Vector(index_, vector));  // EAGAIN: none
  }
  if (got != static_cast<ssize_t>(sizeof(n))) {
    return Fail(EIO, "read IRQ eventfd", "short read");
  }
  return n;
}

Result<uint64_t> IrqSet::Wait(uint32_t vector, std::chrono::milliseconds timeout) {
  using Clock = std::chrono::steady_clock;
  const int fd = VFIOD_TRY(VectorFd(vector, "wait for IRQ"));
  constexpr auto kLongest = std::chrono::hours(24 * 365);  // longer: no limit (no overflow)
  const bool forever = timeout.count() < 0 || timeout > kLongest;
  const Clock::time_point deadline = Clock::now() + (forever ? Clock::duration{} : timeout);
  for (;;) {
    int wait_ms = -1;
    if (!forever) {
      auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now());
      wait_ms = static_cast<int>(std::max<int64_t>(0, std::min<int64_t>(left.count(), INT32_MAX)));
    }
    pollfd p{.fd = fd, .events = POLLIN, .revents = 0};
    const int ready = os_->Poll(&p, 1, wait_ms);
    if (ready > 0) {
      auto got = TryConsume(vector);
      if (got || got.error().code != EAGAIN) {
        return got;
      }
      // Readable yet empty: someone else consumed it; wait on.
    } else if (ready < 0 && errno != EINTR) {
      return ErrnoError("poll IRQ eventfd", errno, Vector(index_, vector));
    }
    if (!forever && (ready == 0 || Clock::now() >= deadline)) {
      return Fail(ETIMEDOUT, "wait for IRQ",
                  Vector(index_, vector) + " did not fire within " +
                      std::to_string(timeout.count()) + " ms");
    }
  }
}

Result<void> IrqSet::Unmask(uint32_t vector) {
  VFIOD_TRY(VectorFd(vector, "unmask IRQ"));
  if (!info_.automasked()) {
    return Ok();  // MSI / MSI-X: the kernel never masks them
  }
  return SetIrqs(*os_, device_fd_, index_, VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_UNMASK,
                 vector, 1, {}, "unmask " + Vector(index_, vector));
}

Result<void> IrqSet::Disable() {
  const int err = DisableNow();
  if (err != 0) {
    return ErrnoError("VFIO_DEVICE_SET_IRQS", err, std::string("disable ") + IrqIndexName(index_));
  }
  return Ok();
}

}  // namespace vfiod::client
