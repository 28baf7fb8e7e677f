// Just enough of an NVMe controller, on a VFIO device fd, to run one admin
// command with its completion signalled by an interrupt: the admin queues
// in DMA memory, CC/CSTS to enable the controller, and the doorbells.
// Registers are reached with pread/pwrite on the device fd's BAR0 region
// (no mmap: the MSI-X table shares BAR0 and need not be mmap-able).
//
// NVMe BAR0: 0x00 CAP (64 bit; DSTRD bits 35:32), 0x14 CC (EN bit 0, IOSQES
// 19:16, IOCQES 23:20), 0x1c CSTS (RDY bit 0, CFS bit 1), 0x24 AQA, 0x28 ASQ,
// 0x30 ACQ (64 bit each), doorbells from 0x1000 (SQ y tail at
// 0x1000 + 2y * stride, CQ y head at 0x1000 + (2y + 1) * stride, stride
// 4 << DSTRD). The admin completion queue has its interrupt on vector 0.
#pragma once

#include <chrono>
#include <cstdint>

#include "client/vfiod_irq.h"
#include "proto/result.h"
#include "proto/unique_fd.h"

namespace vfiod::examples {

/// A submission queue entry (64 bytes).
struct NvmeCommand {
  uint32_t cdw0 = 0;  ///< opcode 7:0, command id 31:16
  uint32_t nsid = 0;
  uint32_t rsvd[4] = {};
  uint64_t prp1 = 0;
  uint64_t prp2 = 0;
  uint32_t cdw10 = 0;
  uint32_t cdw11_15[5] = {};
};
static_assert(sizeof(NvmeCommand) == 64);

/// A completion queue entry (16 bytes).
struct NvmeCompletion {
  uint32_t result = 0;
  uint32_t rsvd = 0;
  uint32_t sq = 0;      ///< SQ head 15:0, SQ id 31:16
  uint32_t status = 0;  ///< command id 15:0, phase 16, status 31:17
};
static_assert(sizeof(NvmeCompletion) == 16);

/// The admin queue pair of one NVMe controller, with one entry in flight.
class NvmeController {
 public:
  /// Takes the device fd; finds BAR0 and the config region. ENODEV: no BAR0.
  [[nodiscard]] static Result<NvmeController> Open(UniqueFd device_fd);

  /// The PCI vendor id from config space. Errors: pread's errno.
  [[nodiscard]] Result<uint16_t> VendorId() const;
  /// Sets memory space and bus master in the PCI command register.
  [[nodiscard]] Result<void> EnableBusMaster();

  /// Disables the controller if it is on, points the admin queues (2
  /// entries each) at IOVAs `asq` and `acq` (4 KiB aligned), enables it and
  /// waits for CSTS.RDY. EIO: the controller reports a fatal status;
  /// ETIMEDOUT: not ready within `timeout`; EINVAL: a misaligned IOVA.
  [[nodiscard]] Result<void> Enable(uint64_t asq, uint64_t acq, std::chrono::milliseconds timeout);
  /// Clears CC.EN and waits for CSTS.RDY to drop. ETIMEDOUT.
  [[nodiscard]] Result<void> Disable(std::chrono::milliseconds timeout);

  /// Routes the controller's interrupt (vector 0 of `index`, MSI-X or INTx)
  /// to an eventfd. Call it before Enable: QEMU's NVMe (7.2) binds the admin
  /// completion queue to its MSI-X vector when the controller is enabled,
  /// only if MSI-X is on at that moment (else the vector never fires).
  /// Errors: client::IrqSet::Enable's.
  [[nodiscard]] Result<void> EnableIrq(client::IrqIndex index);
  /// The interrupt set (for TryConsume / Wait); empty until EnableIrq.
  [[nodiscard]] client::IrqSet& irq() { return irq_; }

  /// Rings the admin SQ tail doorbell for the one entry written at slot 0.
  [[nodiscard]] Result<void> Submit();
  /// Rings the admin CQ head doorbell past the one completion, which ends
  /// the interrupt (INTx deasserts), then unmasks it.
  [[nodiscard]] Result<void> Complete();

  NvmeController(NvmeController&&) noexcept = default;
  NvmeController& operator=(NvmeController&&) = delete;  // see the members
  NvmeController(const NvmeController&) = delete;
  NvmeController& operator=(const NvmeController&) = delete;
  ~NvmeController() = default;

 private:
  static constexpr uint32_t kCap = 0x00, kCc = 0x14, kCsts = 0x1c, kAqa = 0x24;
  static constexpr uint32_t kAsq = 0x28, kAcq = 0x30, kDoorbells = 0x1000;

  NvmeController(UniqueFd fd, uint64_t bar0, uint64_t config)
      : fd_(std::move(fd)), bar0_(bar0), config_(config) {}
  [[nodiscard]] Result<uint32_t> Read32(uint32_t reg) const;
  [[nodiscard]] Result<void> Write32(uint32_t reg, uint32_t value) const;
  [[nodiscard]] Result<void> Write64(uint32_t reg, uint64_t value) const;
  /// Polls CSTS until RDY equals `ready`. ETIMEDOUT; EIO on CSTS.CFS.
  [[nodiscard]] Result<void> WaitReady(bool ready, std::chrono::milliseconds timeout) const;

  // irq_ borrows fd_: declared after it, so it is disabled first.
  UniqueFd fd_;
  uint64_t bar0_ = 0;    ///< BAR0's offset in the device fd
  uint64_t config_ = 0;  ///< the config space's offset in the device fd
  uint32_t stride_ = 4;  ///< doorbell stride (CAP.DSTRD), read by Enable
  client::IrqSet irq_;
};

}  // namespace vfiod::examples
