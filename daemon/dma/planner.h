// Batch planning of VFIO_IOMMU_MAP_DMA / UNMAP_DMA calls. Pure code: it turns
// a scatter list into the smallest list of calls that respects the chunk size,
// folio boundaries and the kernel's entry budget, and refuses a plan before
// any call is made. The engine executes the plan; nothing here does I/O.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "dma/contiguity.h"
#include "proto/result.h"

namespace vfiod::dma {

/// DMA direction rights of a mapping (VFIO_DMA_MAP_FLAG_READ / _WRITE).
struct Prot {
  bool read = true;   ///< the device may read the memory
  bool write = true;  ///< the device may write the memory
  bool operator==(const Prot&) const = default;
};

/// One piece of a scatter list: map [vaddr, vaddr+size) at iova.
struct MapRange {
  uint64_t vaddr = 0;
  uint64_t iova = 0;
  uint64_t size = 0;
  Prot prot;
  /// Large folios of the backing (from ContiguityScan::folios), VA order;
  /// they may extend beyond the segment. A chunk is never cut inside one.
  /// Not owned: must outlive the PlanMaps call. Empty: 4 KiB pages only.
  /// Merged neighbours may carry different lists; a cut is refused if
  /// either side's list has a folio across it.
  std::span<const Folio> folios;
  /// Chunks end only at vaddr multiples of this (a power of two, the folio
  /// size the backing's geometry guarantees), unless a chunk would be empty:
  /// then it ends at the next multiple. 0 or 4 KiB: any page boundary.
  uint64_t cut_align = 0;
};

/// One VFIO_IOMMU_MAP_DMA call.
struct MapArgs {
  uint64_t vaddr = 0;
  uint64_t iova = 0;
  uint64_t size = 0;
  Prot prot;
  bool operator==(const MapArgs&) const = default;
};

/// Limits a map plan must respect.
struct MapLimits {
  /// Largest size of one MAP_DMA call (config: a long ioctl holds the
  /// container lock and cannot be interrupted). Chunks are cut at folio
  /// boundaries only, so a folio larger than this stays whole in one call.
  /// Must be >= 4 KiB; rounded down to 4 KiB.
  uint64_t chunk_bytes = uint64_t{1} << 30;
  /// Entries left before the kernel's dma_entry_limit (VFIO's DMA_AVAIL
  /// capability; every MAP_DMA call uses one). nullopt: not reported, unchecked.
  std::optional<uint32_t> dma_avail;
  /// Entries to leave unused for other work (peer BAR maps etc.).
  uint32_t reserve_entries = 0;
};

/// Plans the MAP_DMA calls for `segments`: sorted by IOVA, neighbours that are
/// contiguous in both vaddr and IOVA with equal prot are merged, then each
/// merged extent is cut into chunks of at most chunk_bytes at folio boundaries.
/// The result is the fewest calls under those rules.
/// EINVAL: no segments, a segment of size 0, an address or size not 4 KiB
/// aligned, a range that wraps past 2^64 in vaddr or IOVA, prot with neither
/// read nor write, segments overlapping in IOVA, chunk_bytes < 4 KiB;
/// ENOSPC: the plan needs more entries than dma_avail - reserve_entries
/// (detail says how many are needed and left).
[[nodiscard]] Result<std::vector<MapArgs>> PlanMaps(std::span<const MapRange> segments,
                                                    const MapLimits& limits);

/// A kernel entry: what one MAP_DMA call that succeeded holds in a container
/// (the engine's shadow records each). A client's mapping is one or more.
struct Entry {
  uint64_t iova = 0;
  uint64_t size = 0;
  bool operator==(const Entry&) const = default;
};

/// One VFIO_IOMMU_UNMAP_DMA call, and the bytes it must report back.
struct UnmapArgs {
  bool all = false;  ///< VFIO_DMA_UNMAP_FLAG_ALL (then iova and size are 0)
  uint64_t iova = 0;
  uint64_t size = 0;
  uint64_t expected_bytes = 0;  ///< sum of the entries it removes
  bool operator==(const UnmapArgs&) const = default;
};

/// Plans the UNMAP_DMA calls removing exactly `to_unmap` from a container
/// whose live entries are `live` (to_unmap is a subset of live, any order).
/// Entries that follow each other in `live`'s IOVA order with no kept entry
/// between them are removed by one call (type1v2 accepts a range covering
/// several whole entries and empty gaps, never part of an entry). When
/// `to_unmap` is all of `live` and `unmap_all` is true, the plan is one
/// UNMAP_ALL. An empty `to_unmap` gives an empty plan.
/// EINVAL: a to_unmap entry that is not in `live`, listed twice, or live
/// entries that overlap, wrap, or have size 0.
[[nodiscard]] Result<std::vector<UnmapArgs>> PlanUnmaps(std::span<const Entry> to_unmap,
                                                        std::span<const Entry> live,
                                                        bool unmap_all);

}  // namespace vfiod::dma
