// Driving QEMU's edu device through a device fd vfiod handed out: the client
// has no group or container of its own, so it goes straight to the fd
// (regions located with VFIO_DEVICE_GET_REGION_INFO through the kernel seam,
// BAR0 mmap'd, bus mastering set in config space). Register layout in
// /work/shared/vm-facts.md ("The devices").
#pragma once

#include <sys/mman.h>

#include <chrono>
#include <cstdint>
#include <cstring>
#include <string>
#include <thread>

#include "kernel/kernel.h"
#include "kernel/vfio_api.h"

namespace vfiod::itest {

inline constexpr uint32_t kEduIdent = 0x00, kEduSrc = 0x80, kEduDst = 0x88, kEduCount = 0x90,
                          kEduCmd = 0x98;
inline constexpr uint64_t kEduBuffer = 0x40000;  ///< the device's own 4 KiB buffer

/// Edu's BAR0, mmap'd.
struct Bar0 {
  volatile uint8_t* base = nullptr;
  uint32_t Read32(uint32_t reg) const { return *reinterpret_cast<volatile uint32_t*>(base + reg); }
  void Write32(uint32_t reg, uint32_t v) const {
    *reinterpret_cast<volatile uint32_t*>(base + reg) = v;
  }
  void Write64(uint32_t reg, uint64_t v) const {
    *reinterpret_cast<volatile uint64_t*>(base + reg) = v;
  }
  /// One DMA of `len` bytes (below 4096); "" or what went wrong.
  std::string Dma(uint64_t src, uint64_t dst, uint32_t len, bool to_ram) const {
    Write64(kEduSrc, src);
    Write64(kEduDst, dst);
    Write64(kEduCount, len);
    Write32(kEduCmd, 1u | (to_ram ? 2u : 0u));
    for (int i = 0; i < 100000; ++i) {
      if ((Read32(kEduCmd) & 1u) == 0) {
        return "";
      }
      std::this_thread::sleep_for(std::chrono::microseconds(100));
    }
    return "edu DMA did not complete; ";
  }
};

/// Edu's BAR0 behind `device_fd`, mapped, with memory space and bus mastering
/// on; unmapped when it goes.
class EduDevice {
 public:
  /// "" when BAR0 is mapped and reads edu's ident, else what went wrong.
  std::string Open(int device_fd) {
    auto kernel = kernel::MakeLinuxKernel();
    auto bar0 = kernel::GetRegionInfo(*kernel, device_fd, kernel::kPciBar0RegionIndex);
    auto cfg = kernel::GetRegionInfo(*kernel, device_fd, kernel::kPciConfigRegionIndex);
    if (!bar0 || !cfg) {
      return "region info failed; ";
    }
    uint16_t command = 0;
    auto read = kernel->pread(device_fd, &command, 2, static_cast<off_t>(cfg->offset + 4));
    command |= 0x6;  // memory space + bus master
    auto wrote = kernel->pwrite(device_fd, &command, 2, static_cast<off_t>(cfg->offset + 4));
    if (!read || !wrote) {
      return "config space access failed; ";
    }
    void* bar = ::mmap(nullptr, bar0->size, PROT_READ | PROT_WRITE, MAP_SHARED, device_fd,
                       static_cast<off_t>(bar0->offset));
    if (bar == MAP_FAILED) {
      return "mmap BAR0 failed; ";
    }
    size_ = bar0->size;
    bar_.base = static_cast<volatile uint8_t*>(bar);
    return (bar_.Read32(kEduIdent) & 0xff) == 0xed ? "" : "BAR0 ident is not edu's; ";
  }
  EduDevice() = default;
  EduDevice(const EduDevice&) = delete;
  EduDevice& operator=(const EduDevice&) = delete;
  ~EduDevice() {
    if (bar_.base != nullptr) {
      ::munmap(const_cast<uint8_t*>(bar_.base), size_);
    }
  }
  [[nodiscard]] const Bar0& bar() const { return bar_; }

  /// RAM -> device -> RAM through the IOMMU: `len` bytes at `iova` (whose
  /// memory is `bytes`) come back at iova + 8192. "" or what went wrong.
  std::string RoundTrip(uint8_t* bytes, uint64_t iova, uint32_t len, uint8_t seed) const {
    for (uint32_t i = 0; i < len; ++i) {
      bytes[i] = static_cast<uint8_t>(i * 7 + seed);
    }
    std::memset(bytes + 8192, 0, len);
    std::string f = bar_.Dma(iova, kEduBuffer, len, false);
    f += bar_.Dma(kEduBuffer, iova + 8192, len, true);
    if (std::memcmp(bytes, bytes + 8192, len) != 0) {
      f += "the bytes did not come back through the device; ";
    }
    return f;
  }

 private:
  Bar0 bar_;
  size_t size_ = 0;
};

}  // namespace vfiod::itest
