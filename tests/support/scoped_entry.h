// One IOMMU entry with RAII, for tests that drive the vfio layer directly:
// VFIO_IOMMU_MAP_DMA now, UNMAP_DMA on destruction. (The daemon keeps its
// entries in dma::Engine; nothing of it uses this.)
#pragma once

#include <cstdint>
#include <memory>

#include "kernel/vfio_api.h"
#include "proto/result.h"
#include "vfio/container.h"

namespace vfiod::test {

/// Owns one entry of a container. Move-only. Destruction unmaps it and checks
/// that the kernel removed exactly the bytes mapped; a mismatch is reported on
/// stderr (call Unmap() to see it as an error). Holds a share of the container,
/// so the entry is always removed before the container fd closes.
class ScopedEntry {
 public:
  /// VFIO_IOMMU_MAP_DMA; the errno cases of vfio::Container::Map.
  [[nodiscard]] static Result<ScopedEntry> Map(std::shared_ptr<vfio::Container> container,
                                               const kernel::DmaMap& map);

  ScopedEntry(ScopedEntry&& other) noexcept;
  ScopedEntry& operator=(ScopedEntry&& other) noexcept;
  ScopedEntry(const ScopedEntry&) = delete;
  ScopedEntry& operator=(const ScopedEntry&) = delete;
  ~ScopedEntry();

  [[nodiscard]] uint64_t iova() const { return map_.iova; }
  [[nodiscard]] uint64_t size() const { return map_.size; }
  [[nodiscard]] uint64_t vaddr() const { return map_.vaddr; }
  [[nodiscard]] bool mapped() const { return container_ != nullptr; }

  /// Unmaps now. EIO: the kernel removed a different number of bytes than were
  /// mapped (someone else unmapped part of it); errno of UNMAP_DMA otherwise.
  /// The entry is considered gone afterwards either way.
  [[nodiscard]] Result<void> Unmap();

 private:
  ScopedEntry(std::shared_ptr<vfio::Container> container, const kernel::DmaMap& map)
      : container_(std::move(container)), map_(map) {}

  std::shared_ptr<vfio::Container> container_;  // null once unmapped (or moved from)
  kernel::DmaMap map_;
};

}  // namespace vfiod::test
