// Scatter lists through the engine: segments of one backing mapped as one
// mapping, back to back or at named IOVAs, merged where they join, every
// refusal naming its segment and leaving nothing behind, exact unmap.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "engine_fixture.h"

namespace vfiod::dma::testing {
namespace {

using ::testing::HasSubstr;

constexpr uint64_t kP = kPage4K;

struct ModelEntry {
  uint64_t iova;
  uint64_t vaddr;
  uint64_t size;
  bool operator==(const ModelEntry&) const = default;
};

class EngineSegmentsTest : public EngineTest {
 protected:
  std::vector<ModelEntry> Entries() {
    std::vector<ModelEntry> out;
    const std::vector<kernel::ModelEntry> mappings = model_.Entries(container_->fd()).value();
    for (const kernel::ModelEntry& m : mappings) {
      out.push_back({m.iova, m.vaddr, m.size});
    }
    return out;
  }
  Result<MappingReport> MapSegments(std::shared_ptr<const Backing> backing,
                                    std::vector<ScatterPiece> segments) {
    return space_->Map({.backing = std::move(backing), .segments = std::move(segments)});
  }
  // Maps, expects EINVAL/EEXIST naming `index`, and that nothing changed.
  void ExpectRefused(std::vector<ScatterPiece> segments, int code, const std::string& index,
                     std::optional<uint64_t> fixed_iova = std::nullopt) {
    const LeakSnapshot before = Snapshot();
    auto report = space_->Map(
        {.backing = backing_, .fixed_iova = fixed_iova, .segments = std::move(segments)});
    ASSERT_FALSE(report);
    EXPECT_EQ(report.error().code, code) << report.error().message();
    EXPECT_THAT(report.error().detail, HasSubstr(index));
    EXPECT_EQ(Snapshot(), before);
  }

  std::shared_ptr<const Backing> backing_ = Pages(16 * kP);
};

TEST_F(EngineSegmentsTest, SegmentsWithoutIovasFollowEachOtherInOneRange) {
  auto report = MapSegments(backing_, {{.offset = 0, .size = 2 * kP},
                                       {.offset = 8 * kP, .size = kP},
                                       {.offset = 4 * kP, .size = 2 * kP}});
  ASSERT_TRUE(report) << report.error().message();
  const uint64_t base = report->iova;
  const uint64_t va = backing_->vaddr();
  EXPECT_EQ(report->size, 5 * kP);
  EXPECT_EQ(report->vaddr, va);
  EXPECT_EQ(report->segments,
            (std::vector<PlacedPiece>{
                {0, base, 2 * kP}, {8 * kP, base + 2 * kP, kP}, {4 * kP, base + 3 * kP, 2 * kP}}));
  EXPECT_EQ(report->chunks, 3u);
  EXPECT_EQ(Entries(), (std::vector<ModelEntry>{{base, va, 2 * kP},
                                                {base + 2 * kP, va + 8 * kP, kP},
                                                {base + 3 * kP, va + 4 * kP, 2 * kP}}));
  EXPECT_EQ(space_->allocator().allocation_count(), 1u);  // one IOVA range
  EXPECT_EQ(space_->Find(report->id)->segments, report->segments);
  EXPECT_EQ(model_.LockedBytes(), 5 * kP);
  auto unmapped = space_->Unmap(report->id);
  ASSERT_TRUE(unmapped) << unmapped.error().message();
  EXPECT_EQ(unmapped->bytes, 5 * kP);
  EXPECT_EQ(unmapped->ioctls, 1u);  // the three entries are IOVA-adjacent
  EXPECT_TRUE(Entries().empty());
  EXPECT_EQ(space_->allocator().allocation_count(), 0u);
}

TEST_F(EngineSegmentsTest, AdjacentSegmentsMergeIntoOneMapDma) {
  const uint64_t calls = MapCalls();
  auto report = MapSegments(
      backing_, {{.offset = 2 * kP, .size = 2 * kP}, {.offset = 4 * kP, .size = 3 * kP}});
  ASSERT_TRUE(report) << report.error().message();
  EXPECT_EQ(MapCalls(), calls + 1);
  EXPECT_EQ(report->chunks, 1u);
  EXPECT_EQ(report->segments.size(), 2u);
  EXPECT_EQ(Entries(),
            (std::vector<ModelEntry>{{report->iova, backing_->vaddr() + 2 * kP, 5 * kP}}));
}

TEST_F(EngineSegmentsTest, OneSegmentIsAPlainMappingWithASmallReport) {
  auto report = MapSegments(backing_, {{.offset = 3 * kP, .size = 2 * kP, .iova = 0x500000}});
  ASSERT_TRUE(report) << report.error().message();
  EXPECT_TRUE(report->segments.empty());
  EXPECT_EQ(report->iova, 0x500000u);
  EXPECT_EQ(report->vaddr, backing_->vaddr() + 3 * kP);
  EXPECT_EQ(Entries(), (std::vector<ModelEntry>{{0x500000, backing_->vaddr() + 3 * kP, 2 * kP}}));
}

TEST_F(EngineSegmentsTest, BackToBackRangeMayStartAtAFixedIova) {
  auto report =
      space_->Map({.backing = backing_,
                   .fixed_iova = 0x700000,
                   .segments = {{.offset = 0, .size = kP}, {.offset = 5 * kP, .size = kP}}});
  ASSERT_TRUE(report) << report.error().message();
  EXPECT_EQ(report->segments[1].iova, 0x700000u + kP);
}

TEST_F(EngineSegmentsTest, NamedIovasAreKeptAndUnmappedExactly) {
  auto report = MapSegments(backing_, {{.offset = 0, .size = kP, .iova = 0x900000},
                                       {.offset = 4 * kP, .size = 2 * kP, .iova = 0x400000}});
  ASSERT_TRUE(report) << report.error().message();
  EXPECT_EQ(report->iova, 0x900000u);  // the first segment's
  EXPECT_EQ(space_->allocator().allocation_count(), 2u);
  // Another mapping between the two segments' IOVAs survives the unmap.
  auto other = space_->Map({.backing = Pages(kP), .fixed_iova = 0x600000});
  ASSERT_TRUE(other) << other.error().message();
  auto unmapped = space_->Unmap(report->id);
  ASSERT_TRUE(unmapped) << unmapped.error().message();
  EXPECT_EQ(unmapped->bytes, 3 * kP);
  EXPECT_EQ(unmapped->ioctls, 2u);
  EXPECT_EQ(ModelEntries(), (std::vector<Entry>{{0x600000, kP}}));
  EXPECT_EQ(space_->ShadowEntries(), ModelEntries());
  EXPECT_EQ(space_->allocator().allocation_count(), 1u);
}

TEST_F(EngineSegmentsTest, EveryBadSegmentIsRefusedByIndexLeavingNothing) {
  ExpectRefused({{.offset = 0, .size = kP}, {.offset = kP, .size = 0}}, EINVAL, "segment 1");
  ExpectRefused({{.offset = 0, .size = kP}, {.offset = 100, .size = kP}}, EINVAL, "segment 1");
  ExpectRefused({{.offset = 0, .size = kP + 1}}, EINVAL, "segment 0");
  ExpectRefused({{.offset = 0, .size = kP}, {.offset = 15 * kP, .size = 2 * kP}}, EINVAL,
                "segment 1");
  ExpectRefused({{.offset = 0, .size = kP}, {.offset = 20 * kP, .size = kP}}, EINVAL, "segment 1");
  ExpectRefused({{.offset = 0, .size = kP}, {.offset = kP, .size = kP, .iova = 0x100000}}, EINVAL,
                "segment 1");
  ExpectRefused({{.offset = 0, .size = kP, .iova = 0x100000}, {.offset = kP, .size = kP}}, EINVAL,
                "segment 1");
  ExpectRefused({{.offset = 0, .size = kP, .iova = 0x100800}}, EINVAL, "segment 0");
  ExpectRefused({{.offset = 0, .size = 2 * kP, .iova = 0x100000},
                 {.offset = 4 * kP, .size = kP, .iova = 0x300000},
                 {.offset = 8 * kP, .size = kP, .iova = 0x101000}},
                EINVAL, "segment 2");
  ExpectRefused({{.offset = 0, .size = kP, .iova = 0x100000}}, EINVAL, "fixed_iova", 0x200000);
  // Outside the IOVA ranges (the x86 MSI window).
  ExpectRefused(
      {{.offset = 0, .size = kP, .iova = 0x100000}, {.offset = kP, .size = kP, .iova = 0xfee00000}},
      EINVAL, "segment 1");
}

TEST_F(EngineSegmentsTest, ANamedIovaOverAnExistingMappingIsEexist) {
  auto kept = space_->Map({.backing = Pages(kP), .fixed_iova = 0x300000});
  ASSERT_TRUE(kept) << kept.error().message();
  ExpectRefused({{.offset = 0, .size = kP, .iova = 0x100000},
                 {.offset = kP, .size = 2 * kP, .iova = 0x2ff000}},
                EEXIST, "segment 1");
  EXPECT_EQ(ModelEntries(), (std::vector<Entry>{{0x300000, kP}}));
}

TEST_F(EngineSegmentsTest, ContiguityOnDemandCoversEverySegment) {
  auto report =
      MapSegments(backing_, {{.offset = 0, .size = 2 * kP}, {.offset = 8 * kP, .size = 3 * kP}});
  ASSERT_TRUE(report) << report.error().message();
  auto contiguity = space_->Contiguity(report->id);
  ASSERT_TRUE(contiguity) << contiguity.error().message();
  auto reader = ProcPageInfoReader::Open().value();
  auto first = ScanContiguity(*reader, backing_->vaddr(), 2 * kP, kPage4K).value().report;
  auto second = ScanContiguity(*reader, backing_->vaddr() + 8 * kP, 3 * kP, kPage4K).value().report;
  EXPECT_EQ(contiguity->pages, 5u);
  EXPECT_EQ(contiguity->state, first.state);
  EXPECT_EQ(contiguity->run_count, first.run_count + second.run_count);
  EXPECT_EQ(contiguity->folios_4k, first.folios_4k + second.folios_4k);
  EXPECT_EQ(contiguity->pages_not_present, 0u);
}

}  // namespace
}  // namespace vfiod::dma::testing
