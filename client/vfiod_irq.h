// vfiod client library, irq section: a device's interrupts on eventfds, so a
// user-space driver holding a VFIO device fd from device.open needs no raw
// VFIO_DEVICE_GET_IRQ_INFO / VFIO_DEVICE_SET_IRQS of its own.
//
// Everything here acts on the driver's own device fd; the daemon is not
// involved. The system calls go through IrqOs, a seam as narrow as the calls
// made (ioctl, poll, read), so tests can stand in for a device.
#pragma once

#include <poll.h>
#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <vector>

#include "proto/result.h"
#include "proto/unique_fd.h"

namespace vfiod::client {

/// The PCI IRQ indexes of vfio-pci (VFIO_PCI_INTX/MSI/MSIX_IRQ_INDEX).
enum class IrqIndex : uint32_t { kIntx = 0, kMsi = 1, kMsix = 2 };

/// "INTx", "MSI" or "MSI-X".
[[nodiscard]] const char* IrqIndexName(IrqIndex index);

/// What VFIO_DEVICE_GET_IRQ_INFO says of one index.
struct IrqInfo {
  IrqIndex index = IrqIndex::kIntx;
  uint32_t flags = 0;  ///< VFIO_IRQ_INFO_* bits as the kernel reported them
  uint32_t count = 0;  ///< vectors the device offers at this index (0: none)

  /// Can signal an eventfd (VFIO_IRQ_INFO_EVENTFD).
  [[nodiscard]] bool eventfd() const { return (flags & 1u) != 0; }
  /// The kernel masks the vector each time it fires, until it is unmasked
  /// (VFIO_IRQ_INFO_AUTOMASKED: INTx, which is level-triggered).
  [[nodiscard]] bool automasked() const { return (flags & 4u) != 0; }
};

/// The system calls of this section. Each behaves as the POSIX call of its
/// name: it returns what the call returns and sets errno on failure.
class IrqOs {
 public:
  IrqOs() = default;
  IrqOs(const IrqOs&) = delete;
  IrqOs& operator=(const IrqOs&) = delete;
  IrqOs(IrqOs&&) = delete;
  IrqOs& operator=(IrqOs&&) = delete;
  virtual ~IrqOs() = default;
  virtual int Ioctl(int fd, unsigned long request, void* arg) = 0;
  virtual int Poll(pollfd* fds, nfds_t count, int timeout_ms) = 0;
  virtual ssize_t Read(int fd, void* buf, size_t size) = 0;
};

/// The real system calls (a process-wide object, never destroyed).
[[nodiscard]] IrqOs& SystemIrqOs();

/// VFIO_DEVICE_GET_IRQ_INFO of `index` on `device_fd`. Errors: the ioctl's
/// errno (EBADF: not an open fd; ENOTTY: not a VFIO device fd; EINVAL: an
/// index the device does not have).
[[nodiscard]] Result<IrqInfo> GetIrqInfo(int device_fd, IrqIndex index, IrqOs& os = SystemIrqOs());

/// Vectors [0, count) of one index (INTx, MSI or MSI-X) of a device, each
/// signalled on an eventfd (EFD_CLOEXEC | EFD_NONBLOCK) this set owns.
///
/// Ownership: the set owns its eventfds and borrows the device fd, which must
/// stay open until the set is disabled or destroyed (declare the set after
/// the fd's owner, so it is destroyed first). Disable (and the destructor)
/// switches the index off in the kernel before the eventfds close, so the
/// kernel never signals a closed fd. A set is used by one thread at a time.
class IrqSet {
 public:
  /// Queries the index, creates `count` eventfds and hands them to the kernel
  /// (DATA_EVENTFD | ACTION_TRIGGER, start 0). Nothing is left enabled or
  /// open on failure. Errors: EINVAL: count is 0 or more than the device
  /// offers at this index (MSI-X is absent: 0 vectors); ENOTSUP: the index
  /// cannot signal an eventfd; EINVAL from SET_IRQS: another index is already
  /// enabled on the device (vfio-pci allows one of INTx, MSI, MSI-X at a
  /// time); otherwise the errno of GET_IRQ_INFO, eventfd or SET_IRQS.
  /// Disable an earlier set of the device before enabling another: for the
  /// same index the kernel would take the new eventfds, and the old set's
  /// disable would then switch the new one off.
  [[nodiscard]] static Result<IrqSet> Enable(int device_fd, IrqIndex index, uint32_t count = 1,
                                             IrqOs& os = SystemIrqOs());

  IrqSet() = default;  ///< an empty set: nothing enabled
  IrqSet(IrqSet&& other) noexcept;
  /// Disables this set's index (if enabled), then takes over `other`.
  IrqSet& operator=(IrqSet&& other) noexcept;
  IrqSet(const IrqSet&) = delete;
  IrqSet& operator=(const IrqSet&) = delete;
  /// Disables the index if still enabled (an error is printed to stderr).
  ~IrqSet();

  [[nodiscard]] bool enabled() const { return !eventfds_.empty(); }
  [[nodiscard]] IrqIndex index() const { return index_; }
  [[nodiscard]] uint32_t count() const { return static_cast<uint32_t>(eventfds_.size()); }
  /// IRQ_INFO's flags as they were when the set was enabled.
  [[nodiscard]] const IrqInfo& info() const { return info_; }
  /// The eventfd of `vector`, for a caller's own poll loop (still owned by
  /// the set); -1 for a vector the set does not have.
  [[nodiscard]] int eventfd(uint32_t vector) const;

  /// Takes the interrupts `vector` counted since the last consume, without
  /// waiting; returns how many (at least 1). Errors: EAGAIN: none pending;
  /// EINVAL: no such vector (or the set is disabled); read's errno.
  [[nodiscard]] Result<uint64_t> TryConsume(uint32_t vector);

  /// Waits up to `timeout` (negative, or above a year: without limit) for
  /// `vector` to fire, then consumes it as TryConsume. A signal interrupting
  /// the wait does not end it early, nor stretch it past `timeout`. Errors: ETIMEDOUT: nothing
  /// arrived in time; EINVAL: no such vector; poll's or read's errno.
  [[nodiscard]] Result<uint64_t> Wait(uint32_t vector, std::chrono::milliseconds timeout);

  /// Lets `vector` fire again once its interrupt is handled. The kernel masks
  /// INTx each time it fires (automasked): without this an INTx set signals
  /// once. Acknowledge the interrupt in the device first, or a still-asserted
  /// line fires again at once. MSI and MSI-X are never masked by the kernel:
  /// for them this does nothing and succeeds, so a driver may call it in
  /// every mode. Errors: EINVAL: no such vector; SET_IRQS's errno
  /// (DATA_NONE | ACTION_UNMASK).
  [[nodiscard]] Result<void> Unmask(uint32_t vector);

  /// Disables the index now (DATA_NONE | ACTION_TRIGGER, count 0), then
  /// closes the eventfds. Idempotent. Errors: SET_IRQS's errno; the set then
  /// stays enabled (the eventfds stay open, as the kernel may still signal
  /// them) and the destructor tries again.
  [[nodiscard]] Result<void> Disable();

 private:
  IrqSet(int device_fd, IrqInfo info, std::vector<UniqueFd> eventfds, IrqOs& os)
      : os_(&os),
        device_fd_(device_fd),
        index_(info.index),
        info_(info),
        eventfds_(std::move(eventfds)) {}
  /// Disable's work without building an error (the destructor's too): 0, or
  /// the errno of SET_IRQS. Closes the eventfds only once the kernel let go.
  int DisableNow() noexcept;
  /// The set's eventfd for `vector`, or EINVAL naming `op`.
  [[nodiscard]] Result<int> VectorFd(uint32_t vector, const char* op) const;

  IrqOs* os_ = nullptr;
  int device_fd_ = -1;  // borrowed (see the class comment)
  IrqIndex index_ = IrqIndex::kIntx;
  IrqInfo info_;
  // Closed only after the kernel let go of them (Disable, the destructor).
  std::vector<UniqueFd> eventfds_;
};

}  // namespace vfiod::client
