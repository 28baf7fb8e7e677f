// What a user-space driver needs once vfiod has handed it a VFIO device fd:
// the BAR0 mapping, config space access, and MSI through an eventfd. All of
// it is plain VFIO on the driver's own fd (no daemon involved), which is why
// this example includes <linux/vfio.h>: a client program may, the daemon's
// layers other than kernel/ may not.
//
// The edu device (QEMU, 1234:11e8): BAR0 is 1 MiB of registers; 0x00 ident,
// 0x04 liveness (reads back ~value), 0x24 IRQ status, 0x64 IRQ acknowledge,
// 0x80 DMA source, 0x88 DMA destination, 0x90 DMA count, 0x98 DMA command
// (bit0 start/busy, bit1 direction 1 = device->RAM, bit2 interrupt when done).
// Its buffer is at device address 0x40000, 4096 bytes; its DMA mask is 28 bits.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>

#include "proto/result.h"
#include "proto/unique_fd.h"

namespace vfiod::examples {

/// An mmap'd range, unmapped on destruction.
class MappedMemory {
 public:
  MappedMemory() = default;
  MappedMemory(void* addr, size_t size) : addr_(addr), size_(size) {}
  MappedMemory(MappedMemory&& other) noexcept;
  MappedMemory& operator=(MappedMemory&& other) noexcept;
  MappedMemory(const MappedMemory&) = delete;
  MappedMemory& operator=(const MappedMemory&) = delete;
  ~MappedMemory();

  /// mmap(MAP_SHARED, read/write) of `size` bytes of `fd` at `offset`.
  /// Errors: mmap's errno (EINVAL, ENOMEM, EACCES, ...).
  [[nodiscard]] static Result<MappedMemory> Map(int fd, size_t size, uint64_t offset);

  [[nodiscard]] uint8_t* data() const { return static_cast<uint8_t*>(addr_); }
  [[nodiscard]] size_t size() const { return size_; }

 private:
  void* addr_ = nullptr;
  size_t size_ = 0;
};

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

  /// Routes MSI vector 0 to a new eventfd (VFIO_DEVICE_SET_IRQS). Errors:
  /// ENOTSUP (no MSI), the ioctl's errno.
  [[nodiscard]] Result<void> EnableMsi();
  /// Turns MSI off again (also done by the destructor).
  void DisableMsi();

  /// Copies `len` bytes between IOVA `iova` and the device buffer, and waits
  /// for the MSI that says it is done (then checks the status register and
  /// acknowledges it). EINVAL: len is 0 or above kEduMaxTransfer, or MSI is
  /// off; ETIMEDOUT: no interrupt within `timeout`; EIO: the interrupt came
  /// but the device still reports the DMA busy.
  [[nodiscard]] Result<void> Dma(Direction dir, uint64_t iova, uint32_t len,
                                 std::chrono::milliseconds timeout);

  /// How many MSIs the eventfd has counted so far.
  [[nodiscard]] uint64_t interrupts() const { return interrupts_; }

  EduDevice(const EduDevice&) = delete;
  EduDevice& operator=(const EduDevice&) = delete;
  EduDevice(EduDevice&&) noexcept = default;
  EduDevice& operator=(EduDevice&&) noexcept = default;
  ~EduDevice();

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
  [[nodiscard]] Result<void> WaitForMsi(std::chrono::milliseconds timeout);

  // Teardown runs bottom-up: MSI is switched off (destructor body) while the
  // device fd is open, the eventfd closes, BAR0 is unmapped, then the device
  // fd closes.
  UniqueFd fd_;
  MappedMemory bar0_;
  uint64_t config_offset_ = 0;
  UniqueFd msi_eventfd_;
  uint64_t interrupts_ = 0;
};

}  // namespace vfiod::examples
