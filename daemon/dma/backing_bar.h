// The MMIO BAR of a VFIO device as a backing, for peer-to-peer DMA: another
// device in the same container can DMA into it through the IOMMU.
#pragma once

#include <cstdint>
#include <memory>

#include "dma/backing.h"
#include "proto/result.h"
#include "vfio/device.h"

namespace vfiod::dma {

/// Maps region `index` of `device` through the vfio layer at
/// min(next_pow2(size), 1 GiB) alignment, so the IOMMU can map it with
/// superpages. The backing holds the region mapping (and through it the
/// device), so the BAR stays mapped as long as any DMA mapping uses it.
/// Errors: EINVAL no device, the region is not mmap-able, or it has holes
/// (sparse mmap, e.g. an MSI-X table: only a BAR mapped whole can be a DMA
/// target); errno of RegionMapping::Map.
[[nodiscard]] Result<Backing> CreateBarBacking(std::shared_ptr<vfio::Device> device,
                                               uint32_t index);

}  // namespace vfiod::dma
