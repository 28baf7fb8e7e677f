// The model kernel's own share of the daemon's heap per mapping. On the
// model, the type1 driver's per-entry state (Linux keeps it in the kernel,
// struct vfio_dma) lives in vfiod's heap; this measures it alone, in this
// process, so the footprint can be split into vfiod's bookkeeping and the
// model's.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>

namespace vfiod::bench {

/// Maps `entries` 4 KiB slices of one shared memfd mapping with single
/// VFIO_IOMMU_MAP_DMA calls on a model container (VmLikeTopology, group 3),
/// and returns the heap growth (mallinfo2 in-use bytes and RssAnon) per
/// entry, or {"error": ...}.
[[nodiscard]] nlohmann::json MeasureModelShare(uint64_t entries);

}  // namespace vfiod::bench
