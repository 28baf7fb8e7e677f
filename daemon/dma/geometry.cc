#include "dma/geometry.h"

#include <array>
#include <bit>

namespace vfiod::dma {
namespace {

// The physical address of the page at `vaddr`, or nullopt when it is absent
// or PFNs are hidden.
Result<std::optional<uint64_t>> PhysOf(PageInfoReader& reader, uint64_t vaddr) {
  std::array<uint64_t, 1> entry{};
  VFIOD_TRY(reader.ReadPagemap(vaddr / kPage4K, entry));
  const uint64_t pfn = entry[0] & kPagemapPfnMask;
  if ((entry[0] & kPagemapPresent) == 0 || pfn == 0) {
    return std::optional<uint64_t>();
  }
  return std::optional<uint64_t>(pfn * kPage4K);
}

}  // namespace

FolioGeometry GeometryOf(const Backing& backing) {
  switch (backing.kind()) {
    case BackingKind::kHugetlb2M:
    case BackingKind::kHugetlb1G:
      return {.folio_size = backing.page_size(), .exact = true};
    case BackingKind::k4K:
      return {.folio_size = kPage4K, .exact = true};
    case BackingKind::kMemfd:
      if (backing.page_size() > kPage4K) {  // hugetlbfs
        return {.folio_size = backing.page_size(), .exact = true};
      }
      // shmem: folios sit at file offsets aligned to their size.
      if (IsAligned(backing.vaddr() - backing.fd_offset(), kPage2M)) {
        return {.folio_size = kPage2M, .exact = false};
      }
      return {};
    case BackingKind::kThp:
      // Anonymous THP is naturally aligned in VA; a shmem memfd at offset 0.
      if (IsAligned(backing.vaddr() - backing.fd_offset(), kPage2M)) {
        return {.folio_size = kPage2M, .exact = false};
      }
      return {};
    case BackingKind::kBar:
      return {};
  }
  return {};
}

Congruence GeometryCongruence(uint64_t vaddr, uint64_t size, uint64_t folio_size,
                              uint64_t iova_pgsizes) {
  for (int bit = std::countr_zero(kPage1G); bit > std::countr_zero(kPage4K); --bit) {
    const uint64_t page = uint64_t{1} << bit;
    if (page > folio_size || (iova_pgsizes & page) == 0) {
      continue;
    }
    const uint64_t first = (vaddr + page - 1) & ~(page - 1);  // first aligned block
    if (first >= vaddr && first - vaddr < size && size - (first - vaddr) >= page) {
      return Congruence{page, vaddr & (page - 1)};
    }
  }
  return Congruence{};
}

Result<std::optional<Congruence>> ProbeGigaCongruence(PageInfoReader& reader, uint64_t vaddr,
                                                      uint64_t size) {
  const uint64_t end = vaddr + size;
  uint64_t window = vaddr;  // a 2 MiB page that may map to a 1 GiB boundary
  int reads = 0;
  while (reads + 2 <= kGigaProbeReads && window < end && end - window >= kPage1G) {
    const std::optional<uint64_t> first = VFIOD_TRY(PhysOf(reader, window));
    ++reads;
    if (!first) {
      return std::optional<Congruence>();
    }
    const uint64_t misalign = *first & (kPage1G - 1);
    if (misalign != 0) {
      // Were the memory contiguous from here, this vaddr would hold a 1 GiB
      // boundary: look there next.
      window += kPage1G - misalign;
      continue;
    }
    const uint64_t last_page = window + kPage1G - kPage2M;
    const std::optional<uint64_t> last = VFIOD_TRY(PhysOf(reader, last_page));
    ++reads;
    if (last && *last == *first + (kPage1G - kPage2M)) {
      // iova - vaddr must equal paddr - vaddr (mod 1 GiB).
      return std::optional<Congruence>(
          Congruence{kPage1G, (vaddr + (*first - window)) & (kPage1G - 1)});
    }
    window += kPage1G;
  }
  return std::optional<Congruence>();
}

}  // namespace vfiod::dma
