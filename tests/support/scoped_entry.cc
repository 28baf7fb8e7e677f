#include "support/scoped_entry.h"

#include <cstdio>
#include <utility>

namespace vfiod::test {

Result<ScopedEntry> ScopedEntry::Map(std::shared_ptr<vfio::Container> container,
                                     const kernel::DmaMap& map) {
  if (!container) {
    return Fail(EINVAL, "VFIO_IOMMU_MAP_DMA", "no container");
  }
  VFIOD_TRY(container->Map(map));
  return ScopedEntry(std::move(container), map);
}

ScopedEntry::ScopedEntry(ScopedEntry&& other) noexcept
    : container_(std::move(other.container_)), map_(other.map_) {}

ScopedEntry& ScopedEntry::operator=(ScopedEntry&& other) noexcept {
  if (this != &other) {
    if (auto r = Unmap(); !r) {
      std::fprintf(stderr, "vfiod: %s\n", r.error().message().c_str());
    }
    container_ = std::move(other.container_);
    map_ = other.map_;
  }
  return *this;
}

ScopedEntry::~ScopedEntry() {
  if (auto r = Unmap(); !r) {
    std::fprintf(stderr, "vfiod: %s\n", r.error().message().c_str());
  }
}

Result<void> ScopedEntry::Unmap() {
  if (!container_) {
    return Ok();
  }
  std::shared_ptr<vfio::Container> container = std::move(container_);
  uint64_t removed = VFIOD_TRY(container->Unmap(map_.iova, map_.size));
  if (removed != map_.size) {
    return Fail(EIO, "VFIO_IOMMU_UNMAP_DMA",
                "unmapped " + std::to_string(removed) + " bytes at iova " +
                    std::to_string(map_.iova) + ", expected " + std::to_string(map_.size));
  }
  return Ok();
}

}  // namespace vfiod::test
