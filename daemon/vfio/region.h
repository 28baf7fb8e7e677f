// mmap of a device region (a BAR) with RAII, optionally at an aligned address.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "kernel/vfio_api.h"
#include "proto/result.h"
#include "vfio/device.h"

namespace vfiod::vfio {

/// The alignment at which a region of `size` bytes is mapped by default:
/// the next power of two of the size, capped at 1 GiB, at least a page. Mapping
/// a BAR this way lets the IOMMU (and the CPU) use large pages for it.
[[nodiscard]] uint64_t NaturalAlignment(uint64_t size);

struct RegionMapOptions {
  /// Power of two; 0 picks NaturalAlignment(region size).
  uint64_t alignment = 0;
  /// Map writable; ignored (read-only mapping) when the region is not writable.
  bool write = true;
};

/// A region mapped into this process. The whole region's address range is
/// reserved (PROT_NONE) at the requested alignment, then each mmap-able area
/// (all of it, or the sparse areas the kernel lists) is mapped MAP_FIXED from
/// the device fd over the reservation; holes (e.g. an MSI-X table) stay
/// inaccessible. Move-only; unmaps on destruction.
class RegionMapping {
 public:
  /// EINVAL: the region is not mmap-able, empty, or the alignment is not a power
  /// of two; ENOMEM: no address range of that size and alignment; errno of mmap.
  [[nodiscard]] static Result<RegionMapping> Map(std::shared_ptr<Device> device, uint32_t index,
                                                 RegionMapOptions options = {});

  RegionMapping(RegionMapping&& other) noexcept;
  RegionMapping& operator=(RegionMapping&& other) noexcept;
  RegionMapping(const RegionMapping&) = delete;
  RegionMapping& operator=(const RegionMapping&) = delete;
  ~RegionMapping();

  [[nodiscard]] std::byte* data() const { return base_; }
  [[nodiscard]] uint64_t size() const { return size_; }
  [[nodiscard]] const kernel::RegionInfo& info() const { return info_; }
  /// The areas actually mapped (offsets relative to data()).
  [[nodiscard]] const std::vector<kernel::SparseArea>& areas() const { return areas_; }
  /// True when [offset, offset + len) lies within one mapped area.
  [[nodiscard]] bool Accessible(uint64_t offset, uint64_t len) const;

 private:
  RegionMapping() = default;
  void Release();

  // Teardown order: Release() unmaps through the device's kernel while device_
  // is still held, then the device share is dropped (the device fd may close).
  std::shared_ptr<Device> device_;
  kernel::RegionInfo info_;
  std::vector<kernel::SparseArea> areas_;
  std::byte* base_ = nullptr;
  uint64_t size_ = 0;
};

}  // namespace vfiod::vfio
