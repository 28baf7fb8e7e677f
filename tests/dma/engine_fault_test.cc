// All-or-nothing maps: a failure at every chunk of a multi-chunk map, and an
// abandoned job, leave the kernel, the shadow, the allocator, the entry budget
// and the fds exactly as they were. Faults come from the model itself (its
// memlock limit, a foreign mapping in the way), so they are the kernel's own
// errors at the exact chunk. Also the entry budget.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "engine_fixture.h"

namespace vfiod::dma::testing {
namespace {

using ::testing::HasSubstr;

constexpr uint64_t kChunk = 4 * kPage4K;
constexpr uint64_t kChunks = 5;

class EngineFaultTest : public EngineTest {
 protected:
  void SetUp() override {
    EngineTest::SetUp();
    NewSpace({.chunk_bytes = kChunk});
    // A mapping that must survive every rollback untouched.
    keeper_ = Pages(2 * kPage4K);
    auto kept = space_->Map({.backing = keeper_});
    ASSERT_TRUE(kept) << kept.error().message();
    kept_ = *kept;
  }
  std::shared_ptr<const Backing> keeper_;
  MappingReport kept_;
};

TEST_F(EngineFaultTest, MemlockFailureAtEveryChunkRollsBackCompletely) {
  auto backing = Pages(kChunks * kChunk);
  for (uint64_t k = 1; k <= kChunks; ++k) {
    SCOPED_TRACE("failing chunk " + std::to_string(k));
    const LeakSnapshot before = Snapshot();
    const uint64_t maps = MapCalls();
    // Room for the chunks before k only.
    model_.SetMemlockLimit(before.locked_bytes + (k - 1) * kChunk);
    std::vector<uint64_t> progress;
    auto report = space_->Map({.backing = backing, .on_chunk = [&](const MapProgress& p) {
                                 progress.push_back(p.chunks_done);
                               }});
    model_.SetMemlockLimit(UINT64_MAX);
    ASSERT_FALSE(report);
    EXPECT_EQ(report.error().code, ENOMEM);
    EXPECT_THAT(report.error().detail,
                HasSubstr("chunk " + std::to_string(k) + " of " + std::to_string(kChunks)));
    EXPECT_EQ(MapCalls(), maps + k);  // chunks 1..k were tried, no more
    EXPECT_EQ(progress.size(), k - 1);
    EXPECT_EQ(Snapshot(), before);
    EXPECT_EQ(space_->Mappings().size(), 1u);
    EXPECT_EQ(ModelEntries(), (std::vector<Entry>{{kept_.iova, kept_.size}}));
  }
  // And with the limit lifted the same request maps whole.
  auto report = space_->Map({.backing = backing});
  ASSERT_TRUE(report) << report.error().message();
  EXPECT_EQ(report->chunks, kChunks);
}

TEST_F(EngineFaultTest, ForeignMappingInTheWayOfEveryChunkRollsBackCompletely) {
  constexpr uint64_t kBase = 0x1000000;
  auto backing = Pages(kChunks * kChunk);
  auto obstacle = Pages(kPage4K);
  for (uint64_t k = 1; k <= kChunks; ++k) {
    SCOPED_TRACE("failing chunk " + std::to_string(k));
    const LeakSnapshot before = Snapshot();
    const uint64_t in_the_way = kBase + (k - 1) * kChunk + kPage4K;
    ASSERT_TRUE(container_->Map({.vaddr = obstacle->vaddr(), .iova = in_the_way, .size = kPage4K}));
    auto report = space_->Map({.backing = backing, .fixed_iova = kBase});
    ASSERT_FALSE(report);
    EXPECT_EQ(report.error().code, EEXIST);
    EXPECT_THAT(report.error().detail, HasSubstr("chunk " + std::to_string(k) + " of"));
    // Only the keeper and the obstacle are left in the kernel.
    EXPECT_EQ(ModelEntries(),
              (std::vector<Entry>{{kept_.iova, kept_.size}, {in_the_way, kPage4K}}));
    ASSERT_EQ(container_->Unmap(in_the_way, kPage4K).value(), kPage4K);
    EXPECT_EQ(Snapshot(), before);
  }
}

TEST_F(EngineFaultTest, AbandonedJobAfterEveryChunkRollsBackCompletely) {
  auto backing = Pages(kChunks * kChunk);
  for (uint64_t steps = 0; steps < kChunks; ++steps) {
    SCOPED_TRACE("abandoned after " + std::to_string(steps) + " chunks");
    const LeakSnapshot before = Snapshot();
    {
      auto job = space_->BeginMap({.backing = backing});
      ASSERT_TRUE(job) << job.error().message();
      for (uint64_t i = 0; i < steps; ++i) {
        ASSERT_FALSE((*job)->Step().value());
      }
      EXPECT_EQ(ModelEntries().size(), 1 + steps);
      EXPECT_EQ(space_->running_jobs(), 1u);
    }
    EXPECT_EQ(space_->running_jobs(), 0u);
    EXPECT_EQ(Snapshot(), before);
  }
}

TEST_F(EngineFaultTest, BackingFreedOnlyAfterRollback) {
  auto backing = Pages(kChunks * kChunk);
  std::weak_ptr<const Backing> watch = backing;
  model_.SetMemlockLimit(model_.LockedBytes() + kChunk);
  auto report = space_->Map({.backing = std::move(backing)});
  model_.SetMemlockLimit(UINT64_MAX);
  ASSERT_FALSE(report);
  EXPECT_TRUE(watch.expired());
}

TEST_F(EngineTest, RollbackLeavesAMappingItDoesNotOwn) {
  NewSpace({.chunk_bytes = kChunk});
  constexpr uint64_t kBase = 0x1000000;
  auto backing = Pages(kChunks * kChunk);
  auto obstacle = Pages(kPage4K);
  const uint64_t in_the_way = kBase + kChunk + kPage4K;  // inside chunk 2
  ASSERT_TRUE(container_->Map({.vaddr = obstacle->vaddr(), .iova = in_the_way, .size = kPage4K}));
  auto report = space_->Map({.backing = backing, .fixed_iova = kBase});
  ASSERT_FALSE(report);
  EXPECT_EQ(report.error().code, EEXIST);
  // Chunk 1 was the whole shadow, yet the rollback must not sweep the
  // container with UNMAP_ALL: the foreign mapping is still there.
  EXPECT_EQ(ModelEntries(), (std::vector<Entry>{{in_the_way, kPage4K}}));
  EXPECT_TRUE(space_->ShadowEntries().empty());
}

class EngineBudgetTest : public EngineTest {
 protected:
  static kernel::ModelKnobs Knobs() {
    kernel::ModelKnobs knobs;
    knobs.dma_entry_limit = 8;
    return knobs;
  }
  EngineBudgetTest() : EngineTest(Knobs()) {}
};

TEST_F(EngineBudgetTest, RefusesAMapThatWouldExhaustDmaAvailBeforeAnyIoctl) {
  NewSpace({.chunk_bytes = kPage4K});
  EXPECT_EQ(space_->EntriesLeft(), 8u);
  const LeakSnapshot before = Snapshot();
  const uint64_t maps = MapCalls();
  auto nine = space_->Map({.backing = Pages(9 * kPage4K)});
  ASSERT_FALSE(nine);
  EXPECT_EQ(nine.error().code, ENOSPC);
  EXPECT_EQ(MapCalls(), maps);
  EXPECT_EQ(Snapshot(), before);
  // Exactly the budget fits; then nothing more does.
  auto eight = space_->Map({.backing = Pages(8 * kPage4K)});
  ASSERT_TRUE(eight) << eight.error().message();
  EXPECT_EQ(space_->EntriesLeft(), 0u);
  auto one = space_->Map({.backing = Pages(kPage4K)});
  ASSERT_FALSE(one);
  EXPECT_EQ(one.error().code, ENOSPC);
  EXPECT_EQ(MapCalls(), maps + 8);
  // Unmapping gives the entries back.
  ASSERT_TRUE(space_->Unmap(eight->id));
  EXPECT_EQ(space_->EntriesLeft(), 8u);
}

TEST_F(EngineBudgetTest, RunningJobsHoldTheirEntries) {
  NewSpace({.chunk_bytes = kPage4K});
  auto job = space_->BeginMap({.backing = Pages(6 * kPage4K)});
  ASSERT_TRUE(job);
  EXPECT_EQ(space_->EntriesLeft(), 2u);
  auto other = space_->BeginMap({.backing = Pages(3 * kPage4K)});
  ASSERT_FALSE(other);
  EXPECT_EQ(other.error().code, ENOSPC);
  ASSERT_FALSE((*job)->Step().value());
  EXPECT_EQ(space_->EntriesLeft(), 2u);  // one mapped, five still reserved
}

TEST_F(EngineBudgetTest, ReservedEntriesAreKeptBack) {
  NewSpace({.chunk_bytes = kPage4K, .reserve_entries = 3});
  auto six = space_->Map({.backing = Pages(6 * kPage4K)});
  ASSERT_FALSE(six);
  EXPECT_EQ(six.error().code, ENOSPC);
  EXPECT_TRUE(space_->Map({.backing = Pages(5 * kPage4K)}));
}

}  // namespace
}  // namespace vfiod::dma::testing
