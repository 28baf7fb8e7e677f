// One IOMMU mapping with RAII: VFIO_IOMMU_MAP_DMA now, UNMAP_DMA on destruction.
#pragma once

#include <cstdint>
#include <memory>

#include "kernel/vfio_api.h"
#include "proto/result.h"
#include "vfio/container.h"

namespace vfiod::vfio {

/// Owns one mapping of a container. Move-only. Destruction unmaps it and checks
/// that the kernel removed exactly the bytes mapped; a mismatch is reported on
/// stderr (call Unmap() to see it as an error). Holds a share of the container,
/// so the mapping is always removed before the container fd closes.
class DmaMapping {
 public:
  /// VFIO_IOMMU_MAP_DMA; the errno cases of Container::Map.
  [[nodiscard]] static Result<DmaMapping> Map(std::shared_ptr<Container> container,
                                              const kernel::DmaMap& map);

  DmaMapping(DmaMapping&& other) noexcept;
  DmaMapping& operator=(DmaMapping&& other) noexcept;
  DmaMapping(const DmaMapping&) = delete;
  DmaMapping& operator=(const DmaMapping&) = delete;
  ~DmaMapping();

  [[nodiscard]] uint64_t iova() const { return map_.iova; }
  [[nodiscard]] uint64_t size() const { return map_.size; }
  [[nodiscard]] uint64_t vaddr() const { return map_.vaddr; }
  [[nodiscard]] bool mapped() const { return container_ != nullptr; }

  /// Unmaps now. EIO: the kernel removed a different number of bytes than were
  /// mapped (someone else unmapped part of it); errno of UNMAP_DMA otherwise.
  /// The mapping is considered gone afterwards either way.
  [[nodiscard]] Result<void> Unmap();

 private:
  DmaMapping(std::shared_ptr<Container> container, const kernel::DmaMap& map)
      : container_(std::move(container)), map_(map) {}

  std::shared_ptr<Container> container_;  // null once unmapped (or moved from)
  kernel::DmaMap map_;
};

}  // namespace vfiod::vfio
