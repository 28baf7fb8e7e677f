// Device interrupts delivered through eventfds (VFIO_DEVICE_SET_IRQS).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <vector>

#include "proto/result.h"
#include "proto/unique_fd.h"
#include "vfio/device.h"

namespace vfiod::vfio {

/// `count` vectors of one IRQ index (INTx, MSI or MSI-X), each signalled on an
/// eventfd this object owns. Move-only; destruction disables the index
/// (DATA_NONE|ACTION_TRIGGER, count 0) before the eventfds close, so the kernel
/// never signals a closed fd. A set is used by one thread at a time.
class IrqSet {
 public:
  /// Creates `count` eventfds (EFD_CLOEXEC|EFD_NONBLOCK) and hands them to the
  /// kernel for vectors [0, count). EINVAL: index unknown, count 0 or above
  /// what IRQ_INFO reports, or the index does not support eventfds.
  [[nodiscard]] static Result<IrqSet> Enable(std::shared_ptr<Device> device, uint32_t index,
                                             uint32_t count = 1);

  IrqSet(IrqSet&& other) noexcept = default;
  IrqSet& operator=(IrqSet&& other) noexcept;
  IrqSet(const IrqSet&) = delete;
  IrqSet& operator=(const IrqSet&) = delete;
  ~IrqSet();

  [[nodiscard]] uint32_t index() const { return index_; }
  [[nodiscard]] uint32_t count() const { return static_cast<uint32_t>(eventfds_.size()); }
  /// The eventfd of `vector` (for an external poller); -1 when out of range.
  [[nodiscard]] int eventfd(uint32_t vector) const;

  /// Consumes the pending interrupts of `vector` without blocking; returns how
  /// many arrived since the last call. EAGAIN: none pending; EINVAL: bad vector.
  [[nodiscard]] Result<uint64_t> TryConsume(uint32_t vector) const;
  /// Waits up to `timeout` for `vector` to fire and consumes it.
  /// ETIMEDOUT: nothing arrived in time; EINVAL: bad vector.
  [[nodiscard]] Result<uint64_t> Wait(uint32_t vector, std::chrono::milliseconds timeout) const;

  /// Re-enables `vector` after its interrupt was handled. INTx is masked by
  /// the kernel each time it fires (IRQ_INFO's AUTOMASKED): without this, an
  /// INTx set signals once. EINVAL: bad vector; ENOTTY: the index cannot be
  /// masked (MSI/MSI-X are never masked by the kernel and need no unmask).
  [[nodiscard]] Result<void> Unmask(uint32_t vector) const;

  /// Disables the index now (the destructor does it otherwise). Idempotent.
  [[nodiscard]] Result<void> Disable();

 private:
  IrqSet(std::shared_ptr<Device> device, uint32_t index, std::vector<UniqueFd> fds)
      : device_(std::move(device)), index_(index), eventfds_(std::move(fds)) {}

  // Teardown order: the destructor disables the index while the device fd is
  // open; then eventfds_ close (declared last, destroyed first); then the
  // device share is released.
  std::shared_ptr<Device> device_;
  uint32_t index_ = 0;
  std::vector<UniqueFd> eventfds_;
};

}  // namespace vfiod::vfio
