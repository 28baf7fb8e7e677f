#include "dma/planner.h"

#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <limits>
#include <string>

namespace vfiod::dma {
namespace {

constexpr uint64_t kMax = std::numeric_limits<uint64_t>::max();
constexpr const char* kMapOp = "plan MAP_DMA";
constexpr const char* kUnmapOp = "plan UNMAP_DMA";

Result<void> CheckSegment(const MapRange& s, size_t index) {
  auto fail = [&](const std::string& why) {
    return Fail(EINVAL, kMapOp,
                fmt::format("segment {} (vaddr {:#x}, iova {:#x}, size {:#x}): {}", index, s.vaddr,
                            s.iova, s.size, why));
  };
  if (s.size == 0) {
    return fail("size is 0");
  }
  if ((s.vaddr | s.iova | s.size) % kPage4K != 0) {
    return fail("not 4 KiB aligned");
  }
  if (s.vaddr > kMax - (s.size - 1)) {
    return fail("vaddr range wraps");
  }
  if (s.iova > kMax - (s.size - 1)) {
    return fail("IOVA range wraps");
  }
  if (!s.prot.read && !s.prot.write) {
    return fail("neither read nor write");
  }
  if (s.cut_align != 0 && (s.cut_align & (s.cut_align - 1)) != 0) {
    return fail("cut alignment is not a power of two");
  }
  return Ok();
}

// A maximal run of segments contiguous in vaddr and IOVA with equal prot.
// `parts` are its segments in order; each brings its own folio list.
struct Extent {
  uint64_t vaddr = 0;
  uint64_t iova = 0;
  uint64_t size = 0;
  Prot prot;
  std::vector<const MapRange*> parts;
  uint64_t cut_align = kPage4K;  // the largest of the parts'
};

bool Joins(const Extent& e, const MapRange& s) {
  uint64_t v_last = e.vaddr + (e.size - 1);
  uint64_t i_last = e.iova + (e.size - 1);
  return e.prot == s.prot && v_last != kMax && i_last != kMax && v_last + 1 == s.vaddr &&
         i_last + 1 == s.iova;
}

Result<std::vector<Extent>> MergeSegments(std::span<const MapRange> segments) {
  std::vector<const MapRange*> order;
  order.reserve(segments.size());
  for (size_t i = 0; i < segments.size(); ++i) {
    VFIOD_TRY(CheckSegment(segments[i], i));
    order.push_back(&segments[i]);
  }
  std::ranges::stable_sort(order, {}, [](const MapRange* s) { return s->iova; });
  std::vector<Extent> extents;
  for (const MapRange* s : order) {
    if (!extents.empty()) {
      Extent& prev = extents.back();
      if (prev.iova + (prev.size - 1) >= s->iova) {
        return Fail(EINVAL, kMapOp, fmt::format("segments overlap in IOVA at {:#x}", s->iova));
      }
      if (Joins(prev, *s)) {
        prev.size += s->size;
        prev.parts.push_back(s);
        prev.cut_align = std::max(prev.cut_align, s->cut_align);
        continue;
      }
    }
    extents.push_back(
        Extent{s->vaddr, s->iova, s->size, s->prot, {s}, std::max(s->cut_align, kPage4K)});
  }
  return extents;
}

// The folio of `folios` strictly containing the page boundary at vaddr `cut`.
const Folio* FolioAcross(std::span<const Folio> folios, uint64_t cut) {
  auto it = std::ranges::upper_bound(folios, cut, {}, &Folio::vaddr);
  if (it == folios.begin()) {
    return nullptr;
  }
  --it;
  // Inside when vaddr < cut < vaddr + size, written without overflow.
  if (it->vaddr < cut && cut - it->vaddr < it->size) {
    return &*it;
  }
  return nullptr;
}

// The folio across boundary `cut` of extent `e` (cut strictly inside e), as
// seen by the segments on either side of it.
const Folio* FolioAcross(const Extent& e, uint64_t cut) {
  auto after = std::ranges::upper_bound(e.parts, cut, {}, &MapRange::vaddr);
  --after;  // the part holding the page at cut; parts[0].vaddr < cut
  if (const Folio* f = FolioAcross((*after)->folios, cut)) {
    return f;
  }
  if ((*after)->vaddr == cut && after != e.parts.begin()) {
    return FolioAcross((*(after - 1))->folios, cut);  // the part ending at cut
  }
  return nullptr;
}

// Cuts one extent into chunks of at most `chunk` bytes, at folio boundaries.
void CutExtent(const Extent& e, uint64_t chunk, std::vector<MapArgs>* ops) {
  uint64_t offset = 0;
  while (offset < e.size) {
    uint64_t left = e.size - offset;
    uint64_t len = std::min(left, chunk);
    const uint64_t start = e.vaddr + offset;
    if (len < left && e.cut_align > kPage4K) {
      const uint64_t mask = e.cut_align - 1;
      const uint64_t end = (start + len) & ~mask;
      // No aligned end inside the chunk: keep the folio at `start` whole.
      len = end > start ? end - start : std::min(left, ((start | mask) + 1) - start);
    }
    if (len < left) {
      if (const Folio* f = FolioAcross(e, start + len)) {
        if (f->vaddr > start) {
          len = f->vaddr - start;  // end the chunk before the folio
        } else {
          // The folio began at or before this chunk and is larger than a
          // chunk: keep it whole, ending the chunk where it ends (or at the end).
          len = std::min(left, f->vaddr + f->size - start);
        }
      }
    }
    ops->push_back(MapArgs{e.vaddr + offset, e.iova + offset, len, e.prot});
    offset += len;
  }
}

}  // namespace

Result<std::vector<MapArgs>> PlanMaps(std::span<const MapRange> segments, const MapLimits& limits) {
  if (segments.empty()) {
    return Fail(EINVAL, kMapOp, "no segments");
  }
  if (limits.chunk_bytes < kPage4K) {
    return Fail(EINVAL, kMapOp, fmt::format("chunk size {:#x} is below 4 KiB", limits.chunk_bytes));
  }
  uint64_t chunk = limits.chunk_bytes & ~(kPage4K - 1);
  std::vector<Extent> extents = VFIOD_TRY(MergeSegments(segments));
  std::vector<MapArgs> ops;
  for (const Extent& e : extents) {
    CutExtent(e, chunk, &ops);
  }
  if (limits.dma_avail) {
    uint64_t avail = *limits.dma_avail;
    uint64_t usable = avail > limits.reserve_entries ? avail - limits.reserve_entries : 0;
    if (ops.size() > usable) {
      return Fail(ENOSPC, kMapOp,
                  fmt::format("the plan needs {} DMA entries but {} are left ({} available, {} "
                              "reserved); raise vfio_iommu_type1 dma_entry_limit, use larger "
                              "chunks or larger pages",
                              ops.size(), usable, avail, limits.reserve_entries));
    }
  }
  return ops;
}

namespace {

Result<std::vector<Entry>> SortedLive(std::span<const Entry> live) {
  std::vector<Entry> sorted(live.begin(), live.end());
  std::ranges::sort(sorted, {}, &Entry::iova);
  for (size_t i = 0; i < sorted.size(); ++i) {
    const Entry& m = sorted[i];
    if (m.size == 0 || m.iova > kMax - (m.size - 1)) {
      return Fail(EINVAL, kUnmapOp,
                  fmt::format("live mapping {:#x} (+{:#x}) is empty or wraps", m.iova, m.size));
    }
    if (i > 0 && sorted[i - 1].iova + (sorted[i - 1].size - 1) >= m.iova) {
      return Fail(EINVAL, kUnmapOp, fmt::format("live mappings overlap at {:#x}", m.iova));
    }
  }
  return sorted;
}

// Marks which of `live` (sorted) are to be removed.
Result<std::vector<bool>> MarkRemoved(std::span<const Entry> live,
                                      std::span<const Entry> to_unmap) {
  std::vector<bool> removed(live.size(), false);
  for (const Entry& m : to_unmap) {
    auto it = std::ranges::lower_bound(live, m.iova, {}, &Entry::iova);
    if (it == live.end() || *it != m) {
      return Fail(EINVAL, kUnmapOp,
                  fmt::format("{:#x} (+{:#x}) is not a live mapping", m.iova, m.size));
    }
    size_t index = static_cast<size_t>(it - live.begin());
    if (removed[index]) {
      return Fail(EINVAL, kUnmapOp, fmt::format("{:#x} is listed twice", m.iova));
    }
    removed[index] = true;
  }
  return removed;
}

void AppendGroup(std::span<const Entry> group, std::vector<UnmapArgs>* ops) {
  uint64_t first = group.front().iova;
  uint64_t last = group.back().iova + (group.back().size - 1);
  uint64_t bytes = 0;
  for (const Entry& m : group) {
    bytes += m.size;
  }
  if (first == 0 && last == kMax) {
    // 2^64 bytes do not fit the size field: split at the first mapping.
    AppendGroup(group.first(1), ops);
    AppendGroup(group.subspan(1), ops);
    return;
  }
  ops->push_back(UnmapArgs{false, first, last - first + 1, bytes});
}

}  // namespace

Result<std::vector<UnmapArgs>> PlanUnmaps(std::span<const Entry> to_unmap,
                                          std::span<const Entry> live, bool unmap_all) {
  std::vector<Entry> sorted = VFIOD_TRY(SortedLive(live));
  std::vector<bool> removed = VFIOD_TRY(MarkRemoved(sorted, to_unmap));
  std::vector<UnmapArgs> ops;
  if (to_unmap.empty()) {
    return ops;
  }
  if (unmap_all && to_unmap.size() == sorted.size()) {
    uint64_t bytes = 0;
    for (const Entry& m : sorted) {
      bytes += m.size;
    }
    ops.push_back(UnmapArgs{true, 0, 0, bytes});
    return ops;
  }
  size_t i = 0;
  while (i < sorted.size()) {
    if (!removed[i]) {
      ++i;
      continue;
    }
    size_t j = i;
    while (j < sorted.size() && removed[j]) {
      ++j;
    }
    AppendGroup(std::span<const Entry>(sorted).subspan(i, j - i), &ops);
    i = j;
  }
  return ops;
}

}  // namespace vfiod::dma
