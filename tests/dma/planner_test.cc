// PlanMaps / PlanUnmaps: merging, chunking at folio boundaries, the entry
// budget, 2^64 edges, and type1v2-legal unmap batching.
#include "dma/planner.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cerrno>
#include <limits>
#include <optional>
#include <random>
#include <vector>

namespace vfiod::dma {
namespace {

constexpr uint64_t kMax = std::numeric_limits<uint64_t>::max();
constexpr uint64_t k4K = 0x1000;
constexpr uint64_t k2M = 0x200000;
constexpr uint64_t k1G = 0x40000000;
constexpr Prot kRW{true, true};
constexpr Prot kRO{true, false};

MapRange Seg(uint64_t vaddr, uint64_t iova, uint64_t size, Prot prot = kRW,
             std::span<const Folio> folios = {}) {
  return MapRange{vaddr, iova, size, prot, folios};
}

std::vector<MapArgs> Plan(std::span<const MapRange> segs, MapLimits limits = {}) {
  auto plan = PlanMaps(segs, limits);
  EXPECT_TRUE(plan) << plan.error().message();
  return plan ? *plan : std::vector<MapArgs>{};
}

MapLimits Limits(uint64_t chunk_bytes, std::optional<uint32_t> dma_avail = std::nullopt) {
  MapLimits limits;
  limits.chunk_bytes = chunk_bytes;
  limits.dma_avail = dma_avail;
  return limits;
}

int Code(std::span<const MapRange> segs, MapLimits limits = {}) {
  auto plan = PlanMaps(segs, limits);
  return plan ? 0 : plan.error().code;
}

TEST(PlanMaps, RejectsBadSegments) {
  EXPECT_EQ(Code({}), EINVAL);
  std::vector<MapRange> zero = {Seg(0x10000, 0, 0)};
  EXPECT_EQ(Code(zero), EINVAL);
  std::vector<MapRange> unaligned_vaddr = {Seg(0x10800, 0, k4K)};
  EXPECT_EQ(Code(unaligned_vaddr), EINVAL);
  std::vector<MapRange> unaligned_iova = {Seg(0x10000, 0x800, k4K)};
  EXPECT_EQ(Code(unaligned_iova), EINVAL);
  std::vector<MapRange> unaligned_size = {Seg(0x10000, 0, 0x1800)};
  EXPECT_EQ(Code(unaligned_size), EINVAL);
  std::vector<MapRange> no_prot = {Seg(0x10000, 0, k4K, Prot{false, false})};
  EXPECT_EQ(Code(no_prot), EINVAL);
  std::vector<MapRange> iova_wraps = {Seg(0x10000, kMax - k4K + 1, 2 * k4K)};
  EXPECT_EQ(Code(iova_wraps), EINVAL);
  std::vector<MapRange> vaddr_wraps = {Seg(kMax - k4K + 1, 0, 2 * k4K)};
  EXPECT_EQ(Code(vaddr_wraps), EINVAL);
  std::vector<MapRange> overlap = {Seg(0x10000, 0x0, 2 * k4K), Seg(0x90000, k4K, k4K)};
  EXPECT_EQ(Code(overlap), EINVAL);
  std::vector<MapRange> ok = {Seg(0x10000, 0, k4K)};
  EXPECT_EQ(Code(ok, Limits(0x800)), EINVAL);
}

TEST(PlanMaps, TheLastPageOf64BitSpaceIsPlannable) {
  std::vector<MapRange> top = {Seg(kMax - 2 * k4K + 1, kMax - 2 * k4K + 1, 2 * k4K)};
  std::vector<MapArgs> expect = {{kMax - 2 * k4K + 1, kMax - 2 * k4K + 1, 2 * k4K, kRW}};
  EXPECT_EQ(Plan(top), expect);
  // Merging up to the last vaddr page works too.
  std::vector<MapRange> two = {Seg(kMax - 2 * k4K + 1, 0x0, k4K), Seg(kMax - k4K + 1, k4K, k4K)};
  std::vector<MapArgs> merged = {{kMax - 2 * k4K + 1, 0x0, 2 * k4K, kRW}};
  EXPECT_EQ(Plan(two), merged);
}

TEST(PlanMaps, MergesNeighboursContiguousInVaddrAndIovaWithEqualProt) {
  std::vector<MapRange> segs = {
      Seg(0x100000, 0x10000, k4K),       // \ merge
      Seg(0x101000, 0x11000, 2 * k4K),   // /
      Seg(0x103000, 0x13000, k4K, kRO),  // prot differs
      Seg(0x200000, 0x14000, k4K, kRO),  // vaddr not contiguous
      Seg(0x201000, 0x16000, k4K, kRO),  // IOVA not contiguous
  };
  std::vector<MapArgs> expect = {{0x100000, 0x10000, 3 * k4K, kRW},
                                 {0x103000, 0x13000, k4K, kRO},
                                 {0x200000, 0x14000, k4K, kRO},
                                 {0x201000, 0x16000, k4K, kRO}};
  EXPECT_EQ(Plan(segs), expect);
}

TEST(PlanMaps, SortsByIovaBeforeMerging) {
  std::vector<MapRange> segs = {Seg(0x102000, 0x12000, k4K), Seg(0x100000, 0x10000, k4K),
                                Seg(0x101000, 0x11000, k4K)};
  std::vector<MapArgs> expect = {{0x100000, 0x10000, 3 * k4K, kRW}};
  EXPECT_EQ(Plan(segs), expect);
}

TEST(PlanMaps, CutsIntoChunksOnPlainPages) {
  std::vector<MapRange> segs = {Seg(0x1000000, 0x0, 10 * k4K)};
  MapLimits limits = Limits(4 * k4K + 123);  // rounded down to 4 pages
  std::vector<MapArgs> expect = {{0x1000000, 0x0, 4 * k4K, kRW},
                                 {0x1004000, 0x4000, 4 * k4K, kRW},
                                 {0x1008000, 0x8000, 2 * k4K, kRW}};
  EXPECT_EQ(Plan(segs, limits), expect);
}

TEST(PlanMaps, CutsOnlyAtFolioBoundaries) {
  // 4 KiB page, then two 2 MiB folios, then 4 KiB pages; chunks of 3 MiB.
  uint64_t base = 0x40000000;
  std::vector<Folio> folios = {{base + k2M, k2M}, {base + 2 * k2M, k2M}};
  std::vector<MapRange> segs = {
      Seg(base + k2M - k4K, 0x7ff000, k4K + 2 * k2M + 2 * k4K, kRW, folios)};
  MapLimits limits = Limits(3 * 0x100000);
  auto ops = Plan(segs, limits);
  // A 3 MiB cut would fall inside the second folio: the chunk ends before it.
  std::vector<MapArgs> expect = {{base + k2M - k4K, 0x7ff000, k2M + k4K, kRW},
                                 {base + 2 * k2M, 0xa00000, k2M + 2 * k4K, kRW}};
  EXPECT_EQ(ops, expect);
  for (const MapArgs& op : ops) {
    EXPECT_LE(op.size, limits.chunk_bytes);
  }
  // 1 MiB chunks: the lone page, then each folio whole, then the tail pages.
  limits.chunk_bytes = 0x100000;
  std::vector<MapArgs> small = {{base + k2M - k4K, 0x7ff000, k4K, kRW},
                                {base + k2M, 0x800000, k2M, kRW},
                                {base + 2 * k2M, 0xa00000, k2M, kRW},
                                {base + 3 * k2M, 0xc00000, 2 * k4K, kRW}};
  EXPECT_EQ(Plan(segs, limits), small);
}

TEST(PlanMaps, AFolioLargerThanTheChunkStaysWhole) {
  uint64_t base = 0x80000000;
  std::vector<Folio> folios = {{base, k1G}, {base + k1G, k1G}};
  std::vector<MapRange> segs = {Seg(base, 0x0, 2 * k1G + 3 * k4K, kRW, folios)};
  MapLimits limits = Limits(256 * 0x100000);
  std::vector<MapArgs> expect = {
      {base, 0x0, k1G, kRW}, {base + k1G, k1G, k1G, kRW}, {base + 2 * k1G, 2 * k1G, 3 * k4K, kRW}};
  EXPECT_EQ(Plan(segs, limits), expect);
}

TEST(PlanMaps, ASegmentStartingInsideAFolioKeepsTheRestOfItWhole) {
  uint64_t base = 0x80000000;
  std::vector<Folio> folios = {{base, k1G}};
  std::vector<MapRange> segs = {Seg(base + k2M, 0x0, k1G - k2M + k4K, kRW, folios)};
  MapLimits limits = Limits(k2M);
  std::vector<MapArgs> expect = {{base + k2M, 0x0, k1G - k2M, kRW},
                                 {base + k1G, k1G - k2M, k4K, kRW}};
  EXPECT_EQ(Plan(segs, limits), expect);
}

TEST(PlanMaps, MergedSegmentsWithSeparateFolioListsStillProtectFolios) {
  uint64_t base = 0x40000000;
  std::vector<Folio> left = {{base, k2M}};  // the folio straddles the segments' join
  std::vector<MapRange> segs = {Seg(base, 0x0, k2M / 2, kRW, left),
                                Seg(base + k2M / 2, k2M / 2, k2M / 2 + k4K, kRW, {})};
  MapLimits limits = Limits(k2M / 2);
  std::vector<MapArgs> expect = {{base, 0x0, k2M, kRW}, {base + k2M, k2M, k4K, kRW}};
  EXPECT_EQ(Plan(segs, limits), expect);
}

TEST(PlanMaps, CutsOnlyAtTheGeometrysAlignment) {
  MapRange seg = Seg(k2M, 0x10000000, 4 * k2M);
  seg.cut_align = k2M;
  // 3 MiB chunks end at 2 MiB boundaries: four 2 MiB calls.
  EXPECT_EQ(Plan(std::span(&seg, 1), Limits(3 * k2M / 2)),
            (std::vector<MapArgs>{{k2M, 0x10000000, k2M, kRW},
                                  {2 * k2M, 0x10000000 + k2M, k2M, kRW},
                                  {3 * k2M, 0x10000000 + 2 * k2M, k2M, kRW},
                                  {4 * k2M, 0x10000000 + 3 * k2M, k2M, kRW}}));
  // A chunk smaller than the alignment keeps each aligned block whole; a
  // start inside a block ends at the block's end.
  MapRange inside = Seg(k2M + 3 * k4K, 0x20000000, 2 * k2M);
  inside.cut_align = k2M;
  EXPECT_EQ(Plan(std::span(&inside, 1), Limits(16 * k4K)),
            (std::vector<MapArgs>{{k2M + 3 * k4K, 0x20000000, k2M - 3 * k4K, kRW},
                                  {2 * k2M, 0x20000000 + k2M - 3 * k4K, k2M, kRW},
                                  {3 * k2M, 0x20000000 + 2 * k2M - 3 * k4K, 3 * k4K, kRW}}));
  MapRange odd = Seg(0, 0, k4K);
  odd.cut_align = 3 * k4K;
  EXPECT_EQ(PlanMaps(std::span(&odd, 1), {}).error().code, EINVAL);
}

TEST(PlanMaps, EntryBudgetExactlyAtTheLimitPassesOneMoreFails) {
  std::vector<MapRange> segs = {Seg(0x100000, 0x0, 8 * k4K)};
  MapLimits limits = Limits(k4K, 8);
  EXPECT_EQ(Plan(segs, limits).size(), 8u);
  limits.dma_avail = 7;
  auto refused = PlanMaps(segs, limits);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, ENOSPC);
  EXPECT_NE(refused.error().detail.find("needs 8"), std::string::npos);
  limits.dma_avail = 10;
  limits.reserve_entries = 2;
  EXPECT_EQ(Plan(segs, limits).size(), 8u);
  limits.reserve_entries = 3;
  EXPECT_EQ(Code(segs, limits), ENOSPC);
  limits.dma_avail = 0;
  limits.reserve_entries = 5;  // more reserved than available: nothing usable
  EXPECT_EQ(Code(segs, limits), ENOSPC);
  limits.dma_avail.reset();  // not reported: not checked
  EXPECT_EQ(Plan(segs, limits).size(), 8u);
}

// Random scatter lists checked against the rules, and against a dynamic
// program that finds the fewest chunks any legal plan could have.
struct Rules {
  std::vector<Folio> folios;
  uint64_t chunk_pages = 1;

  [[nodiscard]] const Folio* Across(uint64_t vaddr) const {
    for (const Folio& f : folios) {
      if (f.vaddr < vaddr && vaddr < f.vaddr + f.size) {
        return &f;
      }
    }
    return nullptr;
  }
  [[nodiscard]] bool Within(uint64_t vaddr, uint64_t size) const {
    for (const Folio& f : folios) {
      if (f.vaddr <= vaddr && vaddr + size <= f.vaddr + f.size) {
        return true;
      }
    }
    return false;
  }
  // Fewest chunks for [vaddr, vaddr + pages * 4K) cut only at legal boundaries.
  [[nodiscard]] uint64_t MinChunks(uint64_t vaddr, uint64_t pages) const {
    std::vector<uint64_t> best(pages + 1, kMax);
    best[0] = 0;
    for (uint64_t q = 1; q <= pages; ++q) {
      if (q < pages && Across(vaddr + q * k4K)) {
        continue;
      }
      for (uint64_t p = 0; p < q; ++p) {
        bool ok =
            best[p] != kMax && (q - p <= chunk_pages || Within(vaddr + p * k4K, (q - p) * k4K));
        if (ok) {
          best[q] = std::min(best[q], best[p] + 1);
        }
      }
    }
    return best[pages];
  }
};

TEST(PlanMaps, RandomScatterListsGetTheFewestLegalChunks) {
  std::mt19937_64 rng(99);
  constexpr uint64_t kArea = 0x10000000;  // VA of the backing; folios live here
  for (int round = 0; round < 300; ++round) {
    Rules rules;
    rules.chunk_pages = 1 + rng() % 12;
    for (uint64_t block = 0; block < 32; ++block) {  // 32 blocks of 8 pages
      uint64_t kind = rng() % 4;
      uint64_t base = kArea + block * 8 * k4K;
      if (kind == 1) {
        rules.folios.push_back({base, 8 * k4K});
      } else if (kind == 2) {
        rules.folios.push_back({base + 4 * k4K, 4 * k4K});
      }
    }
    // Segments: mostly back to back in vaddr and IOVA, sometimes a jump or a
    // prot change, so some merge and some do not.
    std::vector<MapRange> segs;
    uint64_t v = kArea + (rng() % 8) * k4K;
    uint64_t iova = 0x100000 + (rng() % 8) * k4K;
    while (v < kArea + 200 * k4K) {
      uint64_t pages = 1 + rng() % 20;
      Prot prot = rng() % 5 == 0 ? kRO : kRW;
      segs.push_back(Seg(v, iova, pages * k4K, prot, rules.folios));
      uint64_t jump = rng() % 4 == 0 ? (1 + rng() % 3) * k4K : 0;
      v += pages * k4K + (rng() % 2 == 0 ? jump : 0);
      iova += pages * k4K + (rng() % 2 == 0 ? jump : 0);
    }
    std::vector<MapRange> shuffled = segs;
    std::ranges::shuffle(shuffled, rng);
    auto plan = PlanMaps(shuffled, Limits(rules.chunk_pages * k4K));
    ASSERT_TRUE(plan) << plan.error().message();

    // Expected extents: merge the (already IOVA-sorted) segments.
    std::vector<MapRange> extents;
    for (const MapRange& s : segs) {
      if (!extents.empty()) {
        MapRange& e = extents.back();
        if (e.vaddr + e.size == s.vaddr && e.iova + e.size == s.iova && e.prot == s.prot) {
          e.size += s.size;
          continue;
        }
      }
      extents.push_back(s);
    }
    uint64_t expected_ops = 0;
    for (const MapRange& e : extents) {
      expected_ops += rules.MinChunks(e.vaddr, e.size / k4K);
    }
    ASSERT_EQ(plan->size(), expected_ops) << "round " << round;

    // Every op: inside one extent with its offset and prot, within the
    // chunk size or inside one folio, never cut inside a folio; together
    // they tile the extents in order.
    size_t op_index = 0;
    for (const MapRange& e : extents) {
      uint64_t covered = 0;
      while (covered < e.size) {
        ASSERT_LT(op_index, plan->size());
        const MapArgs& op = (*plan)[op_index++];
        EXPECT_EQ(op.vaddr, e.vaddr + covered);
        EXPECT_EQ(op.iova, e.iova + covered);
        EXPECT_EQ(op.prot, e.prot);
        EXPECT_TRUE(op.size <= rules.chunk_pages * k4K || rules.Within(op.vaddr, op.size));
        if (covered != 0) {
          EXPECT_EQ(rules.Across(op.vaddr), nullptr) << "cut inside a folio, round " << round;
        }
        covered += op.size;
      }
      EXPECT_EQ(covered, e.size);
    }
    EXPECT_EQ(op_index, plan->size());
  }
}

// --- unmaps -------------------------------------------------------------------

std::vector<UnmapArgs> Unplan(std::span<const Entry> to_unmap, std::span<const Entry> live,
                              bool unmap_all = false) {
  auto plan = PlanUnmaps(to_unmap, live, unmap_all);
  EXPECT_TRUE(plan) << plan.error().message();
  return plan ? *plan : std::vector<UnmapArgs>{};
}

TEST(PlanUnmaps, BatchesRunsOfRemovedMappingsAcrossEmptyGaps) {
  std::vector<Entry> live = {{0x0, k4K},        {0x1000, k4K},
                             {0x3000, 2 * k4K}, {0x10000, k4K},  // kept
                             {0x20000, k4K},    {0x30000, k4K}};
  std::vector<Entry> remove = {
      {0x30000, k4K}, {0x0, k4K}, {0x3000, 2 * k4K}, {0x1000, k4K}, {0x20000, k4K}};
  std::vector<UnmapArgs> expect = {{false, 0x0, 0x5000, 4 * k4K},
                                   {false, 0x20000, 0x11000, 2 * k4K}};
  EXPECT_EQ(Unplan(remove, live), expect);
}

TEST(PlanUnmaps, NeverCoversAKeptMapping) {
  std::vector<Entry> live = {{0x0, k4K}, {0x1000, k4K}, {0x2000, k4K}};
  std::vector<Entry> remove = {{0x0, k4K}, {0x2000, k4K}};
  std::vector<UnmapArgs> expect = {{false, 0x0, k4K, k4K}, {false, 0x2000, k4K, k4K}};
  EXPECT_EQ(Unplan(remove, live), expect);
}

TEST(PlanUnmaps, EverythingIsOneUnmapAllWhenSupported) {
  std::vector<Entry> live = {{0x0, k4K}, {0x10000, k2M}};
  std::vector<UnmapArgs> all = {{true, 0, 0, k4K + k2M}};
  EXPECT_EQ(Unplan(live, live, true), all);
  std::vector<UnmapArgs> ranged = {{false, 0x0, 0x10000 + k2M, k4K + k2M}};
  EXPECT_EQ(Unplan(live, live, false), ranged);
}

TEST(PlanUnmaps, EmptyRequestIsAnEmptyPlan) {
  std::vector<Entry> live = {{0x0, k4K}};
  EXPECT_TRUE(Unplan({}, live, true).empty());
  EXPECT_TRUE(Unplan({}, {}, true).empty());
}

TEST(PlanUnmaps, RejectsWhatWasNotMapped) {
  std::vector<Entry> live = {{0x0, 2 * k4K}};
  std::vector<Entry> part = {{0x0, k4K}};  // would split a mapping
  EXPECT_EQ(PlanUnmaps(part, live, false).error().code, EINVAL);
  std::vector<Entry> absent = {{0x5000, k4K}};
  EXPECT_EQ(PlanUnmaps(absent, live, false).error().code, EINVAL);
  std::vector<Entry> twice = {{0x0, 2 * k4K}, {0x0, 2 * k4K}};
  EXPECT_EQ(PlanUnmaps(twice, live, false).error().code, EINVAL);
  std::vector<Entry> overlapping = {{0x0, 2 * k4K}, {0x1000, k4K}};
  EXPECT_EQ(PlanUnmaps({}, overlapping, false).error().code, EINVAL);
  std::vector<Entry> empty_live = {{0x0, 0}};
  EXPECT_EQ(PlanUnmaps({}, empty_live, false).error().code, EINVAL);
  std::vector<Entry> wrapping = {{kMax - k4K + 1, 2 * k4K}};
  EXPECT_EQ(PlanUnmaps({}, wrapping, false).error().code, EINVAL);
}

TEST(PlanUnmaps, ARangeReachingTheTopOfSpaceIsSplitWhenItWouldBe2To64Bytes) {
  std::vector<Entry> live = {{0x0, k4K}, {0x1000, kMax - 0x1000 + 1}};  // up to 2^64 - 1
  std::vector<UnmapArgs> expect = {{false, 0x0, k4K, k4K},
                                   {false, 0x1000, kMax - 0x1000 + 1, kMax - 0x1000 + 1}};
  EXPECT_EQ(Unplan(live, live, false), expect);
  std::vector<Entry> top = {{kMax - k4K + 1, k4K}};
  std::vector<UnmapArgs> one = {{false, kMax - k4K + 1, k4K, k4K}};
  EXPECT_EQ(Unplan(top, top, false), one);
}

TEST(PlanUnmaps, RandomSubsetsAreRemovedExactlyWithoutTouchingKeptMappings) {
  std::mt19937_64 rng(5);
  for (int round = 0; round < 500; ++round) {
    std::vector<Entry> live;
    std::vector<Entry> remove;
    std::vector<Entry> keep;
    uint64_t iova = (rng() % 4) * k4K;
    for (int i = 0; i < 30; ++i) {
      Entry m{iova, (1 + rng() % 4) * k4K};
      live.push_back(m);
      (rng() % 3 == 0 ? keep : remove).push_back(m);
      iova += m.size + (rng() % 2) * (rng() % 3) * k4K;  // sometimes a gap
    }
    std::ranges::shuffle(remove, rng);
    bool unmap_all = rng() % 2 == 0;
    std::vector<UnmapArgs> ops = Unplan(remove, live, unmap_all);
    if (remove.empty()) {
      EXPECT_TRUE(ops.empty());
      continue;
    }
    if (keep.empty() && unmap_all) {
      ASSERT_EQ(ops.size(), 1u);
      EXPECT_TRUE(ops[0].all);
      continue;
    }
    // Groups = maximal runs of removed mappings in IOVA order.
    size_t groups = 0;
    bool in_group = false;
    for (const Entry& m : live) {
      bool removed = std::ranges::find(remove, m) != remove.end();
      groups += removed && !in_group;
      in_group = removed;
    }
    EXPECT_EQ(ops.size(), groups) << "round " << round;
    for (const UnmapArgs& op : ops) {
      ASSERT_FALSE(op.all);
      uint64_t bytes = 0;
      for (const Entry& m : live) {
        bool overlaps = m.iova < op.iova + op.size && op.iova < m.iova + m.size;
        if (!overlaps) {
          continue;
        }
        // Type1v2: a range covers whole mappings only, and only removed ones.
        EXPECT_TRUE(m.iova >= op.iova && m.iova + m.size <= op.iova + op.size);
        EXPECT_NE(std::ranges::find(remove, m), remove.end()) << "round " << round;
        bytes += m.size;
      }
      EXPECT_EQ(op.expected_bytes, bytes);
    }
    uint64_t total = 0;
    for (const UnmapArgs& op : ops) {
      total += op.expected_bytes;
    }
    uint64_t want = 0;
    for (const Entry& m : remove) {
      want += m.size;
    }
    EXPECT_EQ(total, want);
  }
}

}  // namespace
}  // namespace vfiod::dma
