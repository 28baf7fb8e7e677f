// PlanMaps / PlanUnmaps: merging, chunking at folio boundaries, the entry
// budget, 2^64 edges, and type1v2-legal unmap batching.
#include "dma/planner.h"

#include <gtest/gtest.h>

#include <cerrno>
#include <limits>
#include <optional>
#include <vector>

namespace vfiod::dma {
namespace {

constexpr uint64_t kMax = std::numeric_limits<uint64_t>::max();
constexpr uint64_t k4K = 0x1000;
constexpr uint64_t k2M = 0x200000;
constexpr uint64_t k1G = 0x40000000;
constexpr Prot kRW{true, true};
constexpr Prot kRO{true, false};

Segment Seg(uint64_t vaddr, uint64_t iova, uint64_t size, Prot prot = kRW,
            std::span<const Folio> folios = {}) {
  return Segment{vaddr, iova, size, prot, folios};
}

std::vector<MapOp> Plan(std::span<const Segment> segs, MapLimits limits = {}) {
  auto plan = PlanMaps(segs, limits);
  EXPECT_TRUE(plan) << plan.error().message();
  return plan ? *plan : std::vector<MapOp>{};
}

MapLimits Limits(uint64_t chunk_bytes, std::optional<uint32_t> dma_avail = std::nullopt) {
  MapLimits limits;
  limits.chunk_bytes = chunk_bytes;
  limits.dma_avail = dma_avail;
  return limits;
}

int Code(std::span<const Segment> segs, MapLimits limits = {}) {
  auto plan = PlanMaps(segs, limits);
  return plan ? 0 : plan.error().code;
}

TEST(PlanMaps, RejectsBadSegments) {
  EXPECT_EQ(Code({}), EINVAL);
  std::vector<Segment> zero = {Seg(0x10000, 0, 0)};
  EXPECT_EQ(Code(zero), EINVAL);
  std::vector<Segment> unaligned_vaddr = {Seg(0x10800, 0, k4K)};
  EXPECT_EQ(Code(unaligned_vaddr), EINVAL);
  std::vector<Segment> unaligned_iova = {Seg(0x10000, 0x800, k4K)};
  EXPECT_EQ(Code(unaligned_iova), EINVAL);
  std::vector<Segment> unaligned_size = {Seg(0x10000, 0, 0x1800)};
  EXPECT_EQ(Code(unaligned_size), EINVAL);
  std::vector<Segment> no_prot = {Seg(0x10000, 0, k4K, Prot{false, false})};
  EXPECT_EQ(Code(no_prot), EINVAL);
  std::vector<Segment> iova_wraps = {Seg(0x10000, kMax - k4K + 1, 2 * k4K)};
  EXPECT_EQ(Code(iova_wraps), EINVAL);
  std::vector<Segment> vaddr_wraps = {Seg(kMax - k4K + 1, 0, 2 * k4K)};
  EXPECT_EQ(Code(vaddr_wraps), EINVAL);
  std::vector<Segment> overlap = {Seg(0x10000, 0x0, 2 * k4K), Seg(0x90000, k4K, k4K)};
  EXPECT_EQ(Code(overlap), EINVAL);
  std::vector<Segment> ok = {Seg(0x10000, 0, k4K)};
  EXPECT_EQ(Code(ok, Limits(0x800)), EINVAL);
}

TEST(PlanMaps, TheLastPageOf64BitSpaceIsPlannable) {
  std::vector<Segment> top = {Seg(kMax - 2 * k4K + 1, kMax - 2 * k4K + 1, 2 * k4K)};
  std::vector<MapOp> expect = {{kMax - 2 * k4K + 1, kMax - 2 * k4K + 1, 2 * k4K, kRW}};
  EXPECT_EQ(Plan(top), expect);
  // Merging up to the last vaddr page works too.
  std::vector<Segment> two = {Seg(kMax - 2 * k4K + 1, 0x0, k4K), Seg(kMax - k4K + 1, k4K, k4K)};
  std::vector<MapOp> merged = {{kMax - 2 * k4K + 1, 0x0, 2 * k4K, kRW}};
  EXPECT_EQ(Plan(two), merged);
}

TEST(PlanMaps, MergesNeighboursContiguousInVaddrAndIovaWithEqualProt) {
  std::vector<Segment> segs = {
      Seg(0x100000, 0x10000, k4K),       // \ merge
      Seg(0x101000, 0x11000, 2 * k4K),   // /
      Seg(0x103000, 0x13000, k4K, kRO),  // prot differs
      Seg(0x200000, 0x14000, k4K, kRO),  // vaddr not contiguous
      Seg(0x201000, 0x16000, k4K, kRO),  // IOVA not contiguous
  };
  std::vector<MapOp> expect = {{0x100000, 0x10000, 3 * k4K, kRW},
                               {0x103000, 0x13000, k4K, kRO},
                               {0x200000, 0x14000, k4K, kRO},
                               {0x201000, 0x16000, k4K, kRO}};
  EXPECT_EQ(Plan(segs), expect);
}

TEST(PlanMaps, SortsByIovaBeforeMerging) {
  std::vector<Segment> segs = {Seg(0x102000, 0x12000, k4K), Seg(0x100000, 0x10000, k4K),
                               Seg(0x101000, 0x11000, k4K)};
  std::vector<MapOp> expect = {{0x100000, 0x10000, 3 * k4K, kRW}};
  EXPECT_EQ(Plan(segs), expect);
}

TEST(PlanMaps, CutsIntoChunksOnPlainPages) {
  std::vector<Segment> segs = {Seg(0x1000000, 0x0, 10 * k4K)};
  MapLimits limits = Limits(4 * k4K + 123);  // rounded down to 4 pages
  std::vector<MapOp> expect = {{0x1000000, 0x0, 4 * k4K, kRW},
                               {0x1004000, 0x4000, 4 * k4K, kRW},
                               {0x1008000, 0x8000, 2 * k4K, kRW}};
  EXPECT_EQ(Plan(segs, limits), expect);
}

TEST(PlanMaps, CutsOnlyAtFolioBoundaries) {
  // 4 KiB page, then two 2 MiB folios, then 4 KiB pages; chunks of 3 MiB.
  uint64_t base = 0x40000000;
  std::vector<Folio> folios = {{base + k2M, k2M}, {base + 2 * k2M, k2M}};
  std::vector<Segment> segs = {
      Seg(base + k2M - k4K, 0x7ff000, k4K + 2 * k2M + 2 * k4K, kRW, folios)};
  MapLimits limits = Limits(3 * 0x100000);
  auto ops = Plan(segs, limits);
  // A 3 MiB cut would fall inside the second folio: the chunk ends before it.
  std::vector<MapOp> expect = {{base + k2M - k4K, 0x7ff000, k2M + k4K, kRW},
                               {base + 2 * k2M, 0xa00000, k2M + 2 * k4K, kRW}};
  EXPECT_EQ(ops, expect);
  for (const MapOp& op : ops) {
    EXPECT_LE(op.size, limits.chunk_bytes);
  }
  // 1 MiB chunks: the lone page, then each folio whole, then the tail pages.
  limits.chunk_bytes = 0x100000;
  std::vector<MapOp> small = {{base + k2M - k4K, 0x7ff000, k4K, kRW},
                              {base + k2M, 0x800000, k2M, kRW},
                              {base + 2 * k2M, 0xa00000, k2M, kRW},
                              {base + 3 * k2M, 0xc00000, 2 * k4K, kRW}};
  EXPECT_EQ(Plan(segs, limits), small);
}

TEST(PlanMaps, AFolioLargerThanTheChunkStaysWhole) {
  uint64_t base = 0x80000000;
  std::vector<Folio> folios = {{base, k1G}, {base + k1G, k1G}};
  std::vector<Segment> segs = {Seg(base, 0x0, 2 * k1G + 3 * k4K, kRW, folios)};
  MapLimits limits = Limits(256 * 0x100000);
  std::vector<MapOp> expect = {
      {base, 0x0, k1G, kRW}, {base + k1G, k1G, k1G, kRW}, {base + 2 * k1G, 2 * k1G, 3 * k4K, kRW}};
  EXPECT_EQ(Plan(segs, limits), expect);
}

TEST(PlanMaps, ASegmentStartingInsideAFolioKeepsTheRestOfItWhole) {
  uint64_t base = 0x80000000;
  std::vector<Folio> folios = {{base, k1G}};
  std::vector<Segment> segs = {Seg(base + k2M, 0x0, k1G - k2M + k4K, kRW, folios)};
  MapLimits limits = Limits(k2M);
  std::vector<MapOp> expect = {{base + k2M, 0x0, k1G - k2M, kRW},
                               {base + k1G, k1G - k2M, k4K, kRW}};
  EXPECT_EQ(Plan(segs, limits), expect);
}

TEST(PlanMaps, MergedSegmentsWithSeparateFolioListsStillProtectFolios) {
  uint64_t base = 0x40000000;
  std::vector<Folio> left = {{base, k2M}};  // the folio straddles the segments' join
  std::vector<Segment> segs = {Seg(base, 0x0, k2M / 2, kRW, left),
                               Seg(base + k2M / 2, k2M / 2, k2M / 2 + k4K, kRW, {})};
  MapLimits limits = Limits(k2M / 2);
  std::vector<MapOp> expect = {{base, 0x0, k2M, kRW}, {base + k2M, k2M, k4K, kRW}};
  EXPECT_EQ(Plan(segs, limits), expect);
}

TEST(PlanMaps, EntryBudgetExactlyAtTheLimitPassesOneMoreFails) {
  std::vector<Segment> segs = {Seg(0x100000, 0x0, 8 * k4K)};
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

// --- unmaps -------------------------------------------------------------------

std::vector<UnmapOp> Unplan(std::span<const Mapping> to_unmap, std::span<const Mapping> live,
                            bool unmap_all = false) {
  auto plan = PlanUnmaps(to_unmap, live, unmap_all);
  EXPECT_TRUE(plan) << plan.error().message();
  return plan ? *plan : std::vector<UnmapOp>{};
}

TEST(PlanUnmaps, BatchesRunsOfRemovedMappingsAcrossEmptyGaps) {
  std::vector<Mapping> live = {{0x0, k4K},        {0x1000, k4K},
                               {0x3000, 2 * k4K}, {0x10000, k4K},  // kept
                               {0x20000, k4K},    {0x30000, k4K}};
  std::vector<Mapping> remove = {
      {0x30000, k4K}, {0x0, k4K}, {0x3000, 2 * k4K}, {0x1000, k4K}, {0x20000, k4K}};
  std::vector<UnmapOp> expect = {{false, 0x0, 0x5000, 4 * k4K}, {false, 0x20000, 0x11000, 2 * k4K}};
  EXPECT_EQ(Unplan(remove, live), expect);
}

TEST(PlanUnmaps, NeverCoversAKeptMapping) {
  std::vector<Mapping> live = {{0x0, k4K}, {0x1000, k4K}, {0x2000, k4K}};
  std::vector<Mapping> remove = {{0x0, k4K}, {0x2000, k4K}};
  std::vector<UnmapOp> expect = {{false, 0x0, k4K, k4K}, {false, 0x2000, k4K, k4K}};
  EXPECT_EQ(Unplan(remove, live), expect);
}

TEST(PlanUnmaps, EverythingIsOneUnmapAllWhenSupported) {
  std::vector<Mapping> live = {{0x0, k4K}, {0x10000, k2M}};
  std::vector<UnmapOp> all = {{true, 0, 0, k4K + k2M}};
  EXPECT_EQ(Unplan(live, live, true), all);
  std::vector<UnmapOp> ranged = {{false, 0x0, 0x10000 + k2M, k4K + k2M}};
  EXPECT_EQ(Unplan(live, live, false), ranged);
}

TEST(PlanUnmaps, EmptyRequestIsAnEmptyPlan) {
  std::vector<Mapping> live = {{0x0, k4K}};
  EXPECT_TRUE(Unplan({}, live, true).empty());
  EXPECT_TRUE(Unplan({}, {}, true).empty());
}

TEST(PlanUnmaps, RejectsWhatWasNotMapped) {
  std::vector<Mapping> live = {{0x0, 2 * k4K}};
  std::vector<Mapping> part = {{0x0, k4K}};  // would split a mapping
  EXPECT_EQ(PlanUnmaps(part, live, false).error().code, EINVAL);
  std::vector<Mapping> absent = {{0x5000, k4K}};
  EXPECT_EQ(PlanUnmaps(absent, live, false).error().code, EINVAL);
  std::vector<Mapping> twice = {{0x0, 2 * k4K}, {0x0, 2 * k4K}};
  EXPECT_EQ(PlanUnmaps(twice, live, false).error().code, EINVAL);
  std::vector<Mapping> overlapping = {{0x0, 2 * k4K}, {0x1000, k4K}};
  EXPECT_EQ(PlanUnmaps({}, overlapping, false).error().code, EINVAL);
  std::vector<Mapping> empty_live = {{0x0, 0}};
  EXPECT_EQ(PlanUnmaps({}, empty_live, false).error().code, EINVAL);
  std::vector<Mapping> wrapping = {{kMax - k4K + 1, 2 * k4K}};
  EXPECT_EQ(PlanUnmaps({}, wrapping, false).error().code, EINVAL);
}

TEST(PlanUnmaps, ARangeReachingTheTopOfSpaceIsSplitWhenItWouldBe2To64Bytes) {
  std::vector<Mapping> live = {{0x0, k4K}, {0x1000, kMax - 0x1000 + 1}};  // up to 2^64 - 1
  std::vector<UnmapOp> expect = {{false, 0x0, k4K, k4K},
                                 {false, 0x1000, kMax - 0x1000 + 1, kMax - 0x1000 + 1}};
  EXPECT_EQ(Unplan(live, live, false), expect);
  std::vector<Mapping> top = {{kMax - k4K + 1, k4K}};
  std::vector<UnmapOp> one = {{false, kMax - k4K + 1, k4K, k4K}};
  EXPECT_EQ(Unplan(top, top, false), one);
}

}  // namespace
}  // namespace vfiod::dma
