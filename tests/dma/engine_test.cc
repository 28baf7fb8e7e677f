// DmaSpace on the ModelKernel: mapping, chunking, placement, unmap batching
// and verification, teardown. The shadow map is checked against the model's
// own interval map after every operation.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "engine_fixture.h"

namespace vfiod::dma::testing {
namespace {

using ::testing::HasSubstr;

TEST_F(EngineTest, MapsAndUnmapsOneBackingExactly) {
  auto backing = Pages(16 * kPage4K);
  auto report = space_->Map({.backing = backing});
  ASSERT_TRUE(report) << report.error().message();
  EXPECT_EQ(report->size, 16 * kPage4K);
  EXPECT_EQ(report->vaddr, backing->vaddr());
  EXPECT_EQ(report->backing, BackingKind::k4K);
  EXPECT_TRUE(report->pinned);
  EXPECT_EQ(report->chunks, 1u);
  EXPECT_EQ(report->map_ioctls, 1u);
  EXPECT_EQ(space_->Contiguity(report->id)->pages, 16u);
  EXPECT_EQ(space_->ShadowEntries(), ModelEntries());
  EXPECT_EQ(ModelEntries(), (std::vector<Entry>{{report->iova, 16 * kPage4K}}));
  EXPECT_EQ(model_.LockedBytes(), 16 * kPage4K);
  EXPECT_EQ(model_.Entries(container_->fd())->front().vaddr, backing->vaddr());
  EXPECT_EQ(space_->usage(), (SpaceUsage{.mappings = 1, .bytes = 16 * kPage4K, .entries = 1}));

  auto unmapped = space_->Unmap(report->id);
  ASSERT_TRUE(unmapped) << unmapped.error().message();
  EXPECT_EQ(unmapped->bytes, 16 * kPage4K);
  EXPECT_EQ(unmapped->ioctls, 1u);
  EXPECT_EQ(unmapped->entries, 1u);
  EXPECT_EQ(unmapped->mappings, 1u);
  EXPECT_EQ(space_->usage(), SpaceUsage{});
  EXPECT_TRUE(ModelEntries().empty());
  EXPECT_TRUE(space_->ShadowEntries().empty());
  EXPECT_EQ(model_.LockedBytes(), 0u);
  EXPECT_EQ(space_->allocator().allocation_count(), 0u);
  EXPECT_EQ(space_->Unmap(report->id).error().code, ENOENT);
}

TEST_F(EngineTest, IdsOfFreedMappingsNeverComeBack) {
  auto backing = Pages(4 * kPage4K);
  std::vector<uint64_t> seen;
  for (int round = 0; round < 3; ++round) {
    auto report = space_->Map({.backing = backing});
    ASSERT_TRUE(report) << report.error().message();
    EXPECT_NE(report->id, 0u);
    for (uint64_t old : seen) {
      EXPECT_NE(report->id, old);
      EXPECT_EQ(space_->Find(old).error().code, ENOENT);
      EXPECT_EQ(space_->Unmap(old).error().code, ENOENT);
    }
    seen.push_back(report->id);
    ASSERT_TRUE(space_->Unmap(report->id));
  }
  EXPECT_EQ(space_->Find(0).error().code, ENOENT);
  EXPECT_EQ(space_->Find(UINT64_MAX).error().code, ENOENT);
}

TEST_F(EngineTest, MapsPartOfABacking) {
  auto backing = Pages(8 * kPage4K);
  auto report = space_->Map({.backing = backing, .offset = 2 * kPage4K, .size = 3 * kPage4K});
  ASSERT_TRUE(report) << report.error().message();
  EXPECT_EQ(report->vaddr, backing->vaddr() + 2 * kPage4K);
  EXPECT_EQ(report->size, 3 * kPage4K);
  EXPECT_EQ(model_.LockedBytes(), 3 * kPage4K);
}

TEST_F(EngineTest, ChunksTheMapAndReportsProgressAfterEachChunk) {
  NewSpace({.chunk_bytes = 4 * kPage4K});
  auto backing = Pages(16 * kPage4K);
  std::vector<MapProgress> seen;
  auto report = space_->Map(
      {.backing = backing, .on_chunk = [&](const MapProgress& p) { seen.push_back(p); }});
  ASSERT_TRUE(report) << report.error().message();
  EXPECT_EQ(report->chunks, 4u);
  EXPECT_EQ(report->map_ioctls, 4u);
  ASSERT_EQ(seen.size(), 4u);
  for (size_t i = 0; i < seen.size(); ++i) {
    EXPECT_EQ(seen[i].chunks_done, i + 1);
    EXPECT_EQ(seen[i].chunks_total, 4u);
    EXPECT_EQ(seen[i].bytes_done, (i + 1) * 4 * kPage4K);
    EXPECT_EQ(seen[i].bytes_total, 16 * kPage4K);
  }
  EXPECT_EQ(ModelEntries().size(), 4u);
  EXPECT_EQ(space_->ShadowEntries(), ModelEntries());
  // The four entries are IOVA-adjacent: one UNMAP_DMA removes them all.
  const uint64_t unmaps = UnmapCalls();
  auto unmapped = space_->Unmap(report->id);
  ASSERT_TRUE(unmapped) << unmapped.error().message();
  EXPECT_EQ(unmapped->ioctls, 1u);
  EXPECT_EQ(UnmapCalls(), unmaps + 1);
  EXPECT_EQ(unmapped->bytes, 16 * kPage4K);
  EXPECT_TRUE(ModelEntries().empty());
}

TEST_F(EngineTest, OtherWorkRunsBetweenTheChunksOfTwoJobs) {
  NewSpace({.chunk_bytes = 2 * kPage4K});
  auto a = space_->BeginMap({.backing = Pages(4 * kPage4K)});
  auto b = space_->BeginMap({.backing = Pages(6 * kPage4K)});
  ASSERT_TRUE(a && b);
  EXPECT_EQ(space_->running_jobs(), 2u);
  EXPECT_FALSE(*(*a)->Step());
  EXPECT_FALSE(*(*b)->Step());
  EXPECT_EQ(space_->ShadowEntries(), ModelEntries());  // partial maps are shadowed too
  EXPECT_EQ(space_->UnmapAll().error().code, EBUSY);
  EXPECT_TRUE(*(*a)->Step());
  EXPECT_FALSE(*(*b)->Step());
  EXPECT_TRUE(*(*b)->Step());
  EXPECT_EQ((*a)->Step().error().code, EINVAL);  // finished
  EXPECT_EQ(space_->running_jobs(), 0u);
  EXPECT_EQ(space_->Mappings().size(), 2u);
  EXPECT_EQ(ModelEntries().size(), 5u);
  EXPECT_EQ(space_->ShadowEntries(), ModelEntries());
}

TEST_F(EngineTest, FixedIovaIsHonouredAndOverlapRefusedBeforeAnyIoctl) {
  auto first = space_->Map({.backing = Pages(4 * kPage4K), .fixed_iova = 0x100000});
  ASSERT_TRUE(first) << first.error().message();
  EXPECT_EQ(first->iova, 0x100000u);
  const uint64_t maps = MapCalls();
  auto clash = space_->Map({.backing = Pages(4 * kPage4K), .fixed_iova = 0x102000});
  ASSERT_FALSE(clash);
  EXPECT_EQ(clash.error().code, EEXIST);
  EXPECT_EQ(MapCalls(), maps);
}

TEST_F(EngineTest, DmaMaskLimitsPlacement) {
  constexpr uint64_t kEduMask = (uint64_t{1} << 28) - 1;
  // Fill most of the low 256 MiB with a fixed mapping high in the window.
  auto big = Pages(4 * kPage4K);
  auto high = space_->Map({.backing = big, .fixed_iova = kEduMask + 1 - 4 * kPage4K});
  ASSERT_TRUE(high) << high.error().message();
  for (int i = 0; i < 4; ++i) {
    auto report = space_->Map({.backing = Pages(2 * kPage4K), .max_iova = kEduMask});
    ASSERT_TRUE(report) << report.error().message();
    EXPECT_LE(report->iova + report->size - 1, kEduMask);
  }
  auto too_high =
      space_->Map({.backing = Pages(kPage4K), .fixed_iova = kEduMask + 1, .max_iova = kEduMask});
  ASSERT_FALSE(too_high);
  EXPECT_EQ(too_high.error().code, EINVAL);
}

TEST_F(EngineTest, RejectsBadRequestsBeforeAnyIoctl) {
  auto backing = Pages(4 * kPage4K);
  const uint64_t maps = MapCalls();
  EXPECT_EQ(space_->Map({}).error().code, EINVAL);
  EXPECT_EQ(space_->Map({.backing = backing, .offset = 100}).error().code, EINVAL);
  EXPECT_EQ(space_->Map({.backing = backing, .offset = 5 * kPage4K}).error().code, EINVAL);
  EXPECT_EQ(space_->Map({.backing = backing, .size = 5 * kPage4K}).error().code, EINVAL);
  EXPECT_EQ(space_->Map({.backing = backing, .prot = {.read = false, .write = false}}).error().code,
            EINVAL);
  EXPECT_EQ(MapCalls(), maps);
  EXPECT_EQ(space_->allocator().allocation_count(), 0u);
}

TEST_F(EngineTest, ReadOnlyProtReachesTheKernel) {
  auto report = space_->Map({.backing = Pages(kPage4K), .prot = {.read = true, .write = false}});
  ASSERT_TRUE(report);
  const auto mapping = model_.Entries(container_->fd())->front();
  EXPECT_TRUE(mapping.read);
  EXPECT_FALSE(mapping.write);
}

TEST_F(EngineTest, UnmapAllUsesOneCallAndReleasesEverything) {
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(space_->Map({.backing = Pages(2 * kPage4K)}));
  }
  const uint64_t unmaps = UnmapCalls();
  EXPECT_EQ(space_->usage(), (SpaceUsage{.mappings = 3, .bytes = 6 * kPage4K, .entries = 3}));
  auto all = space_->UnmapAll();
  ASSERT_TRUE(all) << all.error().message();
  EXPECT_EQ(all->bytes, 6 * kPage4K);
  EXPECT_EQ(all->entries, 3u);
  EXPECT_EQ(all->mappings, 3u);
  EXPECT_EQ(space_->usage(), SpaceUsage{});
  EXPECT_EQ(UnmapCalls(), unmaps + 1);
  EXPECT_TRUE(ModelEntries().empty());
  EXPECT_TRUE(space_->Mappings().empty());
  EXPECT_EQ(space_->allocator().allocation_count(), 0u);
  EXPECT_EQ(model_.LockedBytes(), 0u);
}

TEST_F(EngineTest, UnmapKeepsTheNeighbours) {
  auto a = space_->Map({.backing = Pages(2 * kPage4K)});
  auto b = space_->Map({.backing = Pages(2 * kPage4K)});
  auto c = space_->Map({.backing = Pages(2 * kPage4K)});
  ASSERT_TRUE(a && b && c);
  auto unmapped = space_->Unmap(b->id);
  ASSERT_TRUE(unmapped);
  EXPECT_EQ(unmapped->entries, 1u);
  EXPECT_EQ(space_->usage(), (SpaceUsage{.mappings = 2, .bytes = 4 * kPage4K, .entries = 2}));
  EXPECT_EQ(ModelEntries(), (std::vector<Entry>{{a->iova, a->size}, {c->iova, c->size}}));
  EXPECT_EQ(space_->ShadowEntries(), ModelEntries());
  EXPECT_EQ(space_->Mappings().size(), 2u);
}

TEST_F(EngineTest, UnmapSizeMismatchIsReportedAndTheShadowFollowsTheKernel) {
  NewSpace({.chunk_bytes = 2 * kPage4K});
  auto report = space_->Map({.backing = Pages(4 * kPage4K)});
  ASSERT_TRUE(report);
  // Someone removes the second chunk behind the engine's back.
  ASSERT_EQ(container_->Unmap(report->iova + 2 * kPage4K, 2 * kPage4K).value(), 2 * kPage4K);
  auto unmapped = space_->Unmap(report->id);
  ASSERT_FALSE(unmapped);
  EXPECT_EQ(unmapped.error().code, EIO);
  EXPECT_THAT(unmapped.error().detail, HasSubstr("unmapped 8192 bytes"));
  EXPECT_THAT(unmapped.error().detail, HasSubstr("held 16384"));
  EXPECT_TRUE(ModelEntries().empty());
  EXPECT_TRUE(space_->ShadowEntries().empty());
  EXPECT_TRUE(space_->Mappings().empty());
  EXPECT_EQ(space_->allocator().allocation_count(), 0u);
  EXPECT_EQ(space_->usage(), SpaceUsage{});  // released although the count was off
}

TEST_F(EngineTest, UnmapAllThatSweepsAForeignMappingIsAMismatch) {
  ASSERT_TRUE(space_->Map({.backing = Pages(2 * kPage4K)}));
  // A mapping made behind the engine's back, which UNMAP_ALL removes too.
  auto foreign = Pages(kPage4K);
  ASSERT_TRUE(container_->Map({.vaddr = foreign->vaddr(), .iova = 0x40000000, .size = kPage4K}));
  auto all = space_->UnmapAll();
  ASSERT_FALSE(all);
  EXPECT_EQ(all.error().code, EIO);
  EXPECT_THAT(all.error().detail, HasSubstr("unmapped 12288 bytes"));
  EXPECT_TRUE(ModelEntries().empty());
  EXPECT_TRUE(space_->ShadowEntries().empty());
  EXPECT_TRUE(space_->Mappings().empty());
  EXPECT_EQ(model_.LockedBytes(), 0u);
}

TEST_F(EngineTest, DestroyingTheSpaceUnmapsEverything) {
  ASSERT_TRUE(space_->Map({.backing = Pages(2 * kPage4K)}));
  ASSERT_TRUE(space_->Map({.backing = Pages(2 * kPage4K)}));
  space_.reset();
  EXPECT_TRUE(ModelEntries().empty());
  EXPECT_EQ(model_.LockedBytes(), 0u);
}

TEST_F(EngineTest, MappingKeepsTheBackingAlive) {
  auto backing = Pages(2 * kPage4K);
  std::weak_ptr<const Backing> watch = backing;
  auto report = space_->Map({.backing = std::move(backing)});
  ASSERT_TRUE(report);
  EXPECT_FALSE(watch.expired());
  ASSERT_TRUE(space_->Unmap(report->id));
  EXPECT_TRUE(watch.expired());
}

TEST_F(EngineTest, CreateNeedsAnIommu) {
  auto bare = vfio::Container::Open(model_);
  ASSERT_TRUE(bare);
  auto space = DmaSpace::Create(*bare);
  ASSERT_FALSE(space);
  EXPECT_EQ(space.error().code, EINVAL);
}

}  // namespace
}  // namespace vfiod::dma::testing
