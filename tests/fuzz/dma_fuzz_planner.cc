// PlanMaps and PlanUnmaps against references: the map plan must be exactly
// the greedy one (each chunk ends at the farthest allowed cut within the
// chunk size, or at the nearest one past it when there is none), where a cut
// is allowed at a multiple of the extent's cut alignment that is not inside a
// folio. Folios are one consistent set for the whole address space, as a
// real scan would report them, obeying the backing's geometry.
#include <algorithm>
#include <cerrno>
#include <optional>
#include <variant>
#include <vector>

#include "dma/planner.h"
#include "dma_fuzz.h"
#include "fuzz_check.h"

namespace vfiod::fuzz {
namespace {

using dma::Folio;
using dma::MapArgs;
using dma::MapRange;
using u128 = unsigned __int128;
constexpr uint64_t kPage = 4096;

// Disjoint folios, sorted; with geometry `g` > 4 KiB each is naturally
// aligned and at most g, otherwise any 4 KiB-aligned run.
std::vector<Folio> MakeFolios(FuzzedDataProvider& in, uint64_t g) {
  std::vector<Folio> folios;
  const size_t count = in.ConsumeIntegralInRange<size_t>(0, 8);
  for (size_t i = 0; i < count; ++i) {
    Folio f;
    if (g > kPage) {
      f.size = g >> in.ConsumeIntegralInRange<int>(0, 4);
      f.size = std::max(f.size, 2 * kPage);
      f.vaddr = in.ConsumeIntegralInRange<uint64_t>(0, 64 * kPage / f.size) * f.size;
    } else {
      f.size = in.ConsumeIntegralInRange<uint64_t>(2, 16) * kPage;
      f.vaddr = in.ConsumeIntegralInRange<uint64_t>(0, 64) * kPage;
    }
    const bool overlaps = std::ranges::any_of(folios, [&](const Folio& o) {
      return f.vaddr < o.vaddr + o.size && o.vaddr < f.vaddr + f.size;
    });
    if (!overlaps) {
      folios.push_back(f);
    }
  }
  std::ranges::sort(folios, {}, &Folio::vaddr);
  return folios;
}

bool InsideFolio(const std::vector<Folio>& folios, uint64_t cut) {
  return std::ranges::any_of(
      folios, [&](const Folio& f) { return f.vaddr < cut && cut - f.vaddr < f.size; });
}

bool ValidSegment(const MapRange& s) {
  return s.size != 0 && (s.vaddr | s.iova | s.size) % kPage == 0 &&
         s.vaddr <= kMax - (s.size - 1) && s.iova <= kMax - (s.size - 1) &&
         (s.prot.read || s.prot.write) && (s.cut_align & (s.cut_align - 1)) == 0;
}

struct Extent {
  uint64_t vaddr, iova, size;
  dma::Prot prot;
  uint64_t align;
};

// The greedy plan of one extent.
void CutExtent(const Extent& e, uint64_t chunk, const std::vector<Folio>& folios,
               std::vector<MapArgs>& ops) {
  const u128 end = u128{e.vaddr} + e.size;
  auto allowed = [&](u128 cut) {
    return cut == end || (cut % e.align == 0 && !InsideFolio(folios, static_cast<uint64_t>(cut)));
  };
  u128 start = e.vaddr;
  while (start < end) {
    const u128 limit = std::min(end, start + chunk);
    u128 cut = limit;
    while (cut > start && !allowed(cut)) {
      cut -= kPage;
    }
    if (cut == start) {  // nothing allowed within a chunk: the nearest past it
      cut = limit;
      while (!allowed(cut)) {
        cut += kPage;
      }
    }
    const auto offset = static_cast<uint64_t>(start - e.vaddr);
    ops.push_back({e.vaddr + offset, e.iova + offset, static_cast<uint64_t>(cut - start), e.prot});
    start = cut;
  }
}

// The plan PlanMaps must return, or the errno it must fail with.
std::variant<std::vector<MapArgs>, int> RefPlan(std::vector<MapRange> segs,
                                                const std::vector<Folio>& folios,
                                                const dma::MapLimits& limits) {
  if (segs.empty() || limits.chunk_bytes < kPage || !std::ranges::all_of(segs, ValidSegment)) {
    return EINVAL;
  }
  std::ranges::stable_sort(segs, {}, &MapRange::iova);
  std::vector<Extent> extents;
  for (const MapRange& s : segs) {
    const uint64_t align = std::max(s.cut_align, kPage);
    if (!extents.empty()) {
      Extent& prev = extents.back();
      if (u128{prev.iova} + prev.size > s.iova) {
        return EINVAL;
      }
      if (prev.prot == s.prot && u128{prev.vaddr} + prev.size == s.vaddr &&
          u128{prev.iova} + prev.size == s.iova) {
        prev.size += s.size;
        prev.align = std::max(prev.align, align);
        continue;
      }
    }
    extents.push_back({s.vaddr, s.iova, s.size, s.prot, align});
  }
  std::vector<MapArgs> ops;
  for (const Extent& e : extents) {
    CutExtent(e, limits.chunk_bytes & ~(kPage - 1), folios, ops);
  }
  if (limits.dma_avail) {
    const uint64_t usable =
        *limits.dma_avail > limits.reserve_entries ? *limits.dma_avail - limits.reserve_entries : 0;
    if (ops.size() > usable) {
      return ENOSPC;
    }
  }
  return ops;
}

MapRange MakeSegment(FuzzedDataProvider& in, const MapRange* prev, uint64_t g) {
  MapRange s;
  s.size = in.ConsumeIntegralInRange<uint64_t>(1, 32) * kPage;
  if (prev != nullptr && in.ConsumeBool()) {  // continues the previous one
    s.vaddr = prev->vaddr + prev->size;
    s.iova = prev->iova + prev->size;
  } else {
    s.vaddr = in.ConsumeIntegralInRange<uint64_t>(0, 64) * kPage;
    s.iova = Value(in, kPage);
  }
  switch (in.ConsumeIntegralInRange<int>(0, 15)) {
    case 0:
      s.size = in.ConsumeBool() ? 0 : s.size + 1;
      break;
    case 1:
      s.vaddr = 0 - s.size / 2;  // wraps
      break;
    default:
      break;
  }
  s.prot = {in.ConsumeIntegralInRange<int>(0, 7) != 0, in.ConsumeBool()};
  const uint64_t aligns[] = {0, g, g, 3 * kPage};
  s.cut_align = in.PickValueInArray(aligns);
  return s;
}

void FuzzMaps(FuzzedDataProvider& in) {
  const uint64_t geometries[] = {kPage, 16 * kPage, 512 * kPage};
  const uint64_t g = in.PickValueInArray(geometries);
  const std::vector<Folio> folios = MakeFolios(in, g);
  std::vector<MapRange> segs(in.ConsumeIntegralInRange<size_t>(0, 8));
  std::vector<std::vector<Folio>> lists(segs.size());
  for (size_t i = 0; i < segs.size(); ++i) {
    segs[i] = MakeSegment(in, i == 0 ? nullptr : &segs[i - 1], g);
    for (const Folio& f : folios) {  // what a scan of this segment reports
      if (f.vaddr < segs[i].vaddr + segs[i].size && segs[i].vaddr < f.vaddr + f.size) {
        lists[i].push_back(f);
      }
    }
    segs[i].folios = lists[i];
  }
  dma::MapLimits limits;
  limits.chunk_bytes = in.ConsumeIntegralInRange<uint64_t>(0, 40) * kPage +
                       (in.ConsumeIntegralInRange<int>(0, 7) == 0 ? 1 : 0);
  if (in.ConsumeBool()) {
    limits.dma_avail = in.ConsumeIntegralInRange<uint32_t>(0, 64);
    limits.reserve_entries = in.ConsumeIntegralInRange<uint32_t>(0, 8);
  }
  Result<std::vector<MapArgs>> got = dma::PlanMaps(segs, limits);
  auto want = RefPlan(segs, folios, limits);
  if (const int* err = std::get_if<int>(&want)) {
    FUZZ_CHECK(!got && got.error().code == *err);
  } else {
    FUZZ_CHECK(got && *got == std::get<std::vector<MapArgs>>(want));
  }
}

// The unmap plan PlanUnmaps must return, or the errno it must fail with.
std::variant<std::vector<dma::UnmapArgs>, int> RefUnmaps(const std::vector<dma::Entry>& to_unmap,
                                                         std::vector<dma::Entry> live,
                                                         bool unmap_all) {
  std::ranges::sort(live, {}, &dma::Entry::iova);
  for (size_t i = 0; i < live.size(); ++i) {
    const u128 end = u128{live[i].iova} + live[i].size;
    if (live[i].size == 0 || end > u128{kMax} + 1 ||
        (i + 1 < live.size() && end > live[i + 1].iova)) {
      return EINVAL;
    }
  }
  std::vector<bool> removed(live.size());
  for (const dma::Entry& m : to_unmap) {
    auto it = std::ranges::find(live, m);
    if (it == live.end() || removed[it - live.begin()]) {
      return EINVAL;
    }
    removed[it - live.begin()] = true;
  }
  std::vector<dma::UnmapArgs> ops;
  if (!to_unmap.empty() && unmap_all && to_unmap.size() == live.size()) {
    u128 bytes = 0;
    for (const dma::Entry& m : live) {
      bytes += m.size;
    }
    ops.push_back({true, 0, 0, static_cast<uint64_t>(bytes)});
    return ops;
  }
  auto add = [&](size_t first, size_t last) {  // one call for live[first..last]
    uint64_t bytes = 0;
    for (size_t k = first; k <= last; ++k) {
      bytes += live[k].size;
    }
    const u128 end = u128{live[last].iova} + live[last].size;
    ops.push_back({false, live[first].iova, static_cast<uint64_t>(end - live[first].iova), bytes});
  };
  for (size_t i = 0; i < live.size();) {
    size_t j = i;
    while (j < live.size() && removed[j]) {
      ++j;
    }
    if (j == i) {
      ++i;
      continue;
    }
    const bool whole_space =
        live[i].iova == 0 && u128{live[j - 1].iova} + live[j - 1].size == u128{kMax} + 1;
    if (whole_space) {  // 2^64 bytes do not fit one call's size
      add(i, i);
      add(i + 1, j - 1);
    } else {
      add(i, j - 1);
    }
    i = j;
  }
  return ops;
}

void FuzzUnmaps(FuzzedDataProvider& in) {
  std::vector<dma::Entry> live(in.ConsumeIntegralInRange<size_t>(0, 8));
  uint64_t next = Value(in, kPage);
  for (dma::Entry& m : live) {
    m.iova = in.ConsumeIntegralInRange<int>(0, 7) == 0 ? Value(in, kPage) : next;
    m.size = in.ConsumeIntegralInRange<int>(0, 15) == 0
                 ? Value(in, kPage)
                 : in.ConsumeIntegralInRange<uint64_t>(1, 16) * kPage;
    next = m.iova + m.size + in.ConsumeIntegralInRange<uint64_t>(0, 2) * kPage;
  }
  std::vector<dma::Entry> to_unmap(in.ConsumeIntegralInRange<size_t>(0, live.size() + 1));
  for (dma::Entry& m : to_unmap) {
    if (!live.empty() && in.ConsumeIntegralInRange<int>(0, 15) != 0) {
      m = live[in.ConsumeIntegralInRange<size_t>(0, live.size() - 1)];
    } else {
      m = {Value(in, kPage), Value(in, kPage)};
    }
  }
  const bool unmap_all = in.ConsumeBool();
  Result<std::vector<dma::UnmapArgs>> got = dma::PlanUnmaps(to_unmap, live, unmap_all);
  auto want = RefUnmaps(to_unmap, live, unmap_all);
  if (const int* err = std::get_if<int>(&want)) {
    FUZZ_CHECK(!got && got.error().code == *err);
  } else {
    FUZZ_CHECK(got && *got == std::get<std::vector<dma::UnmapArgs>>(want));
  }
}

}  // namespace

void FuzzPlanUnmaps(FuzzedDataProvider& in) {
  while (in.remaining_bytes() > 0) {
    FuzzUnmaps(in);
  }
}

void FuzzPlanMaps(FuzzedDataProvider& in) {
  while (in.remaining_bytes() > 0) {
    FuzzMaps(in);
  }
}

}  // namespace vfiod::fuzz
