// What a user-space driver needs once vfiod has handed it a VFIO device fd:
// the BAR0 mapping, config space access, and its interrupt on an eventfd
// (MSI or INTx, through the client library's irq section). All of it is
// plain VFIO on the driver's own fd (no daemon involved), which is why this
// example includes <linux/vfio.h>: a client program may, the daemon's layers
// other than kernel/ may not.
//
// The edu device (QEMU, 1234:11e8): BAR0 is 1 MiB of registers; 0x00 ident,
// 0x04 liveness (reads back ~value), 0x24 IRQ status, 0x64 IRQ acknowledge,
// 0x80 DMA source, 0x88 DMA destination, 0x90 DMA count, 0x98 DMA command
// (bit0 start/busy, bit1 direction 1 = device->RAM, bit2 interrupt when done).
// Interrupts: 0x24 reads the pending causes (0x100: DMA done), writing them
// to 0x64 acknowledges them. edu signals MSI when the guest enabled it, else
// raises INTx, which stays asserted until acknowledged; it has no MSI-X.
// Its buffer is at device address 0x40000, 4096 bytes; its DMA mask is 28 bits.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>

#include "client/vfiod_irq.h"
#include "device_io.h"
#include "proto/result.h"
#include "proto/unique_fd.h"

namespace vfiod::examples {

inline constexpr uint64_t kEduBuffer = 0x40000;
/// A transfer touching the buffer's last byte stops QEMU: stay below it.
inline constexpr uint32_t kEduMaxTransfer = 4095;
inline constexpr int kEduDmaMaskBits = 28;

enum class Direction { kToDevice, kFromDevice };

/// The edu device on a VFIO device fd.
class EduDevice {
 public:
  /// Takes the device fd, maps BAR0 through its VFIO region info, and checks
  /// the ident register. ENODEV: BAR0 is missing, not mmap-able, or not edu's.
  [[nodiscard]] static Result<EduDevice> Open(UniqueFd device_fd);

  [[nodiscard]] uint32_t Ident() const { return Read32(kIdent); }
  /// Writes `value` to the liveness register; returns what it reads back.
  [[nodiscard]] uint32_t Liveness(uint32_t value) const;

  /// Sets Bus Master Enable in the PCI command register (config offset 4,
  /// bit 2) through the VFIO config region. Errors: pread/pwrite errnos.
  [[nodiscard]] Result<void> EnableBusMaster();

  /// Routes vector 0 of `index` (MSI or INTx) to an eventfd, through the
  /// client library's irq section. Errors: client::IrqSet::Enable's (EINVAL
  /// for MSI-X, which edu lacks; EINVAL from the kernel when another index is
  /// already on: call DisableIrq first).
  [[nodiscard]] Result<void> EnableIrq(client::IrqIndex index);
  /// Turns the interrupt off again (also done by the destructor). Errors:
  /// client::IrqSet::Disable's.
  [[nodiscard]] Result<void> DisableIrq() { return irq_.Disable(); }
  /// What GET_IRQ_INFO says of `index` on this device.
  [[nodiscard]] Result<client::IrqInfo> IrqInfo(client::IrqIndex index) const {
    return client::GetIrqInfo(fd_.get(), index);
  }

  /// Copies `len` bytes between IOVA `iova` and the device buffer, and waits
  /// for the interrupt that says it is done (then checks the DMA finished and
  /// the cause is "DMA done", acknowledges it, and unmasks INTx). Before
  /// starting, no interrupt may be pending: one would not be this DMA's.
  /// EINVAL: len is 0 or above kEduMaxTransfer, or no interrupt is enabled;
  /// ETIMEDOUT: no interrupt within `timeout`; EIO: an interrupt was pending
  /// before the start, or the one that came finds the DMA still busy or
  /// another cause.
  [[nodiscard]] Result<void> Dma(Direction dir, uint64_t iova, uint32_t len,
                                 std::chrono::milliseconds timeout);

  /// How many interrupts the eventfd has counted so far.
  [[nodiscard]] uint64_t interrupts() const { return interrupts_; }

  EduDevice(const EduDevice&) = delete;
  EduDevice& operator=(const EduDevice&) = delete;
  EduDevice(EduDevice&&) noexcept = default;
  // No move assignment: it would close the device fd before the IRQ set
  // that borrows it is disabled.
  EduDevice& operator=(EduDevice&&) = delete;
  ~EduDevice() = default;

 private:
  static constexpr uint32_t kIdent = 0x00;
  static constexpr uint32_t kLiveness = 0x04;
  static constexpr uint32_t kIrqStatus = 0x24;
  static constexpr uint32_t kIrqAck = 0x64;
  static constexpr uint32_t kDmaSrc = 0x80;
  static constexpr uint32_t kDmaDst = 0x88;
  static constexpr uint32_t kDmaCount = 0x90;
  static constexpr uint32_t kDmaCmd = 0x98;

  EduDevice(UniqueFd fd, MappedMemory bar0, uint64_t config_offset)
      : fd_(std::move(fd)), bar0_(std::move(bar0)), config_offset_(config_offset) {}
  [[nodiscard]] uint32_t Read32(uint32_t reg) const;
  void Write32(uint32_t reg, uint32_t value) const;
  void Write64(uint32_t reg, uint64_t value) const;
  /// Waits for the interrupt, acknowledges it in the device, unmasks it.
  [[nodiscard]] Result<void> AwaitDmaIrq(std::chrono::milliseconds timeout);

  // Teardown runs bottom-up: irq_ is disabled and its eventfds close while
  // the device fd it borrows is open, BAR0 is unmapped, then the device fd
  // closes.
  UniqueFd fd_;
  MappedMemory bar0_;
  uint64_t config_offset_ = 0;
  client::IrqSet irq_;
  uint64_t interrupts_ = 0;
};

}  // namespace vfiod::examples
