// A user-space driver for QEMU's "edu" teaching device (1234:11e8), written
// over the vfio layer's Device API. Used by the guest tests to prove that an
// IOMMU mapping really carries device DMA.
//
// Registers (BAR0, 1 MiB MMIO): 0x00 ident, 0x04 liveness (reads back ~value),
// 0x24 IRQ status, 0x60 IRQ raise, 0x64 IRQ acknowledge, 0x80 DMA source, 0x88 DMA
// destination, 0x90 DMA count, 0x98 DMA command (bit0 start/busy, bit1
// direction 1 = device->RAM, bit2 raise an IRQ when done). The device's own
// buffer sits at device address 0x40000, 4096 bytes.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>

#include "proto/result.h"
#include "vfio/device.h"
#include "vfio/irq.h"
#include "vfio/region.h"

namespace vfiod::testing {

inline constexpr uint16_t kEduVendor = 0x1234;
inline constexpr uint16_t kEduDeviceId = 0x11e8;
/// edu addresses DMA with a 28-bit mask: IOVAs must lie below 256 MiB.
inline constexpr uint64_t kEduDmaLimit = uint64_t{1} << 28;
inline constexpr uint64_t kEduBufferAddr = 0x40000;
inline constexpr uint32_t kEduBufferSize = 4096;
/// A transfer that reaches the buffer's last byte stops QEMU with a hardware
/// error, so every transfer must end strictly before it.
inline constexpr uint32_t kEduMaxTransfer = kEduBufferSize - 1;

enum class EduDirection { kToDevice, kFromDevice };
enum class EduCompletion { kPoll, kMsi };

/// Checks a transfer against the quirks above. EINVAL, naming the rule broken.
[[nodiscard]] Result<void> CheckEduTransfer(uint64_t iova, uint32_t device_offset, uint32_t len);

class EduDevice {
 public:
  /// Maps BAR0, checks the ident register and the liveness register, and turns
  /// on bus mastering. ENODEV: BAR0 does not answer like edu.
  [[nodiscard]] static Result<EduDevice> Open(std::shared_ptr<vfio::Device> device);

  [[nodiscard]] uint32_t Ident() const { return Read32(kIdent); }
  /// Writes `value` to the liveness register and returns what it reads back (~value).
  [[nodiscard]] uint32_t Liveness(uint32_t value) const;

  /// Sets `bits` in the interrupt status register, which raises the device's
  /// interrupt (MSI when enabled, else INTx, held until acknowledged).
  void RaiseIrq(uint32_t bits) const { Write32(kIrqRaise, bits); }
  /// Acknowledges every pending interrupt bit (drops INTx).
  void AckIrqs() const;

  /// Routes the DMA-done interrupt to an eventfd through MSI (one vector).
  [[nodiscard]] Result<void> EnableMsi();

  /// Runs one DMA of `len` bytes between IOVA `iova` and the device buffer at
  /// `device_offset`, and waits for it. EINVAL: see CheckEduTransfer, or MSI
  /// completion without EnableMsi(); ETIMEDOUT: the device did not finish (or
  /// did not interrupt) within `timeout`.
  [[nodiscard]] Result<void> Dma(EduDirection dir, uint64_t iova, uint32_t device_offset,
                                 uint32_t len, EduCompletion completion = EduCompletion::kPoll,
                                 std::chrono::milliseconds timeout = std::chrono::seconds(10));

  [[nodiscard]] const std::shared_ptr<vfio::Device>& device() const { return device_; }

 private:
  static constexpr uint32_t kIdent = 0x00;
  static constexpr uint32_t kLiveness = 0x04;
  static constexpr uint32_t kIrqStatus = 0x24;
  static constexpr uint32_t kIrqRaise = 0x60;
  static constexpr uint32_t kIrqAck = 0x64;
  static constexpr uint32_t kDmaSrc = 0x80;
  static constexpr uint32_t kDmaDst = 0x88;
  static constexpr uint32_t kDmaCount = 0x90;
  static constexpr uint32_t kDmaCmd = 0x98;

  EduDevice(std::shared_ptr<vfio::Device> device, vfio::RegionMapping bar0)
      : device_(std::move(device)), bar0_(std::move(bar0)) {}
  [[nodiscard]] uint32_t Read32(uint32_t reg) const;
  void Write32(uint32_t reg, uint32_t value) const;
  void Write64(uint32_t reg, uint64_t value) const;
  [[nodiscard]] Result<void> PollDone(std::chrono::milliseconds timeout) const;

  // Teardown order (reverse of declaration): MSI is disabled and its eventfd
  // closed first, then BAR0 is unmapped, then the device share is dropped.
  std::shared_ptr<vfio::Device> device_;
  vfio::RegionMapping bar0_;
  std::optional<vfio::IrqSet> msi_;
};

}  // namespace vfiod::testing
