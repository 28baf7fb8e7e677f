// Per-container IOVA space: which addresses the IOMMU can translate (the
// kernel's IOVA ranges, reserved windows such as the x86 MSI hole excluded)
// and which of them are taken. Pure bookkeeping, no VFIO I/O.
#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <span>
#include <vector>

#include "dma/free_interval_tree.h"
#include "kernel/vfio_api.h"
#include "proto/result.h"

namespace vfiod::dma {

/// One allocation request. All sizes and addresses are in bytes.
struct IovaRequest {
  uint64_t size = 0;  ///< > 0, a multiple of the smallest IOMMU page
  /// Highest IOVA any byte of the allocation may have (inclusive): the device's
  /// DMA mask, e.g. (1 << 28) - 1 for edu. The default means no limit.
  uint64_t max_iova = std::numeric_limits<uint64_t>::max();
  /// The client named the IOVA: allocate exactly there or fail.
  std::optional<uint64_t> fixed_iova;
  /// Superpage congruence (ignored for fixed_iova): prefer iova % modulus ==
  /// residue. modulus is a power of two; when no such place is free the
  /// allocator retries with each smaller supported page size down to the
  /// smallest, so the request only fails if it fits nowhere.
  uint64_t congruence_modulus = 0;  ///< 0 or the smallest page: no preference
  uint64_t congruence_residue = 0;
};

/// Free-space allocator over one container's IOVA ranges.
///
/// Placement is lowest-address first fit: low IOVAs suit devices with narrow
/// DMA masks, and keep high space whole for large requests.
///
/// Cost: O(log n) per Allocate/Free in the number n of free intervals and
/// allocations. Free intervals live in FreeIntervalTree, a Treap keyed by
/// start and summarised with the largest interval length in each subtree, so
/// "lowest interval with at least L bytes" is one descent. (std::map plus a
/// size index cannot answer "lowest address with room" under a DMA-mask limit
/// without a scan; a size-keyed set alone would give best fit, not low
/// addresses.) Allocations are not recorded one by one: the allocated space
/// is the complement of the free space within the ranges, and the caller (the
/// DMA engine's mapping record) already knows each allocation's IOVA and
/// size, so a node per allocation would only double the memory per mapping.
///
/// Not thread-safe: the owning container's mutex serialises calls.
class IovaAllocator {
 public:
  /// `ranges` are closed, non-overlapping intervals (any order); empty means
  /// the whole 64-bit space. `iova_pgsizes` is VFIO's page-size bitmap; its
  /// lowest bit is the granule every address and size must be aligned to.
  /// Ranges are trimmed inward to the granule. EINVAL: pgsizes is 0, ranges
  /// overlap or have last < start.
  [[nodiscard]] static Result<IovaAllocator> Create(std::span<const kernel::IovaRange> ranges,
                                                    uint64_t iova_pgsizes);

  /// Reserves IOVA space for `request` and returns its first IOVA.
  /// EINVAL: size 0 or not a granule multiple, a fixed IOVA that is
  /// misaligned, wraps, lies above max_iova or (partly) outside the IOVA
  /// ranges, or a congruence modulus that is not a power of two;
  /// EEXIST: a fixed IOVA inside the ranges that overlaps an allocation;
  /// ENOSPC: no free place below max_iova is large enough.
  [[nodiscard]] Result<uint64_t> Allocate(const IovaRequest& request);

  /// Returns [iova, iova+size) to the free space, coalescing it with free
  /// neighbours. It should be exactly one earlier allocation (the caller's
  /// record says which); the allocator checks only that all of it is
  /// allocated. EINVAL: size 0, misaligned, wrapping, or outside the ranges;
  /// ENOENT: part of it is free (a double free, or never allocated).
  [[nodiscard]] Result<void> Free(uint64_t iova, uint64_t size);

  /// Smallest IOMMU page (the alignment granule).
  [[nodiscard]] uint64_t granule() const { return granule_; }
  [[nodiscard]] uint64_t page_sizes() const { return pgsizes_; }
  /// Allocations made and not freed.
  [[nodiscard]] size_t allocation_count() const { return allocations_; }
  /// Bytes still free in the IOVA ranges (saturates at 2^64 - 1).
  [[nodiscard]] uint64_t free_bytes() const { return free_.TotalBytes(); }
  /// The usable ranges after trimming to the granule.
  [[nodiscard]] const std::vector<kernel::IovaRange>& ranges() const { return ranges_; }

 private:
  IovaAllocator(std::vector<kernel::IovaRange> ranges, uint64_t pgsizes);
  Result<uint64_t> AllocateFixed(const IovaRequest& request, uint64_t iova);
  std::optional<uint64_t> FindPlace(uint64_t size, uint64_t max_iova, uint64_t modulus,
                                    uint64_t residue) const;
  /// Takes [iova, iova + size) out of the free tree. EEXIST when it is not
  /// wholly free (the callers found it free: a bug if seen).
  [[nodiscard]] Result<void> Take(uint64_t iova, uint64_t size);
  [[nodiscard]] bool InsideRanges(uint64_t first, uint64_t last) const;

  std::vector<kernel::IovaRange> ranges_;
  uint64_t pgsizes_ = 0;
  uint64_t granule_ = 0;
  FreeIntervalTree free_;
  size_t allocations_ = 0;
};

}  // namespace vfiod::dma
