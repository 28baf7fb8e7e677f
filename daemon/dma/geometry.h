// What a backing's kind and placement say about its folios, so the map path
// can place IOVAs and cut chunks without reading pagemap. Pure code except
// ProbeGigaCongruence, which reads a few pagemap entries.
#pragma once

#include <cstdint>
#include <optional>

#include "dma/backing.h"
#include "dma/contiguity.h"
#include "proto/result.h"

namespace vfiod::dma {

/// The folio layout a backing guarantees for its whole view.
struct FolioGeometry {
  /// Folios are at most this size and naturally aligned in VA (and PA), so a
  /// cut at a multiple of it never splits one. 0: unknown (scan needed).
  uint64_t folio_size = 0;
  /// Every folio is exactly folio_size (hugetlb): the physical layout is one
  /// PFN per folio, and a scan can read one pagemap entry per folio.
  bool exact = false;
};

/// hugetlb (and hugetlbfs client files): the huge page size, exact. A 2 MiB
/// aligned THP view, or a shmem client view whose vaddr is congruent to its
/// file offset mod 2 MiB: 2 MiB (PMD-sized folios at most, each naturally
/// aligned). 4 KiB backings: 4 KiB. Device MMIO and anything else: unknown.
[[nodiscard]] FolioGeometry GeometryOf(const Backing& backing);

/// The congruence for [vaddr, vaddr + size) of memory whose folios are at
/// most `folio_size` and naturally aligned in VA and PA: the largest page of
/// `iova_pgsizes` no larger than folio_size (and 1 GiB) of which the range
/// holds a whole aligned block, with residue vaddr mod page; modulus 4 KiB
/// when no such page helps.
[[nodiscard]] Congruence GeometryCongruence(uint64_t vaddr, uint64_t size, uint64_t folio_size,
                                            uint64_t iova_pgsizes);

/// For 2 MiB hugetlb of at least 1 GiB on an IOMMU with 1 GiB pages: looks
/// for a window of the range that is likely one physically contiguous,
/// 1 GiB-aligned block (first and last 2 MiB page of the window checked),
/// reading at most kGigaProbeReads pagemap entries, one pread each. Returns
/// the 1 GiB congruence for `vaddr` when one is found, nullopt otherwise
/// (also when PFNs are hidden). A wrong guess costs only superpages, never
/// correctness. Errors of the reader pass through.
inline constexpr int kGigaProbeReads = 6;
[[nodiscard]] Result<std::optional<Congruence>> ProbeGigaCongruence(PageInfoReader& reader,
                                                                    uint64_t vaddr, uint64_t size);

}  // namespace vfiod::dma
