// What the example drivers share: an mmap'd range with one owner (BAR0
// registers, DMA memory from vfiod's memfds) and a device region's place in
// the VFIO device fd.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>

#include "client/vfiod_irq.h"
#include "proto/result.h"

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

/// A region of a VFIO PCI device fd (VFIO_PCI_BAR0_REGION_INDEX, ...).
struct Region {
  uint64_t offset = 0;  ///< where it starts in the device fd
  uint64_t size = 0;
  bool mmap = false;  ///< VFIO_REGION_INFO_FLAG_MMAP
};

/// VFIO_DEVICE_GET_REGION_INFO of `index`. Errors: the ioctl's errno.
[[nodiscard]] Result<Region> GetRegion(int device_fd, uint32_t index);

/// Bits of the PCI command register (config offset 4).
inline constexpr uint16_t kPciMemorySpace = 1u << 1;
inline constexpr uint16_t kPciBusMaster = 1u << 2;

/// Sets `bits` in the PCI command register through the config region at
/// `config_offset` of the device fd. Errors: pread's / pwrite's errno (EIO
/// for a short transfer).
[[nodiscard]] Result<void> SetPciCommandBits(int device_fd, uint64_t config_offset, uint16_t bits);

/// The examples' --irq names: "intx", "msi", "msix".
inline const std::map<std::string, client::IrqIndex>& IrqNames() {
  static const std::map<std::string, client::IrqIndex> names{{"intx", client::IrqIndex::kIntx},
                                                             {"msi", client::IrqIndex::kMsi},
                                                             {"msix", client::IrqIndex::kMsix}};
  return names;
}

}  // namespace vfiod::examples
