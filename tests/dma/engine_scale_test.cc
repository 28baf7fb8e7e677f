// 65535 single-page mappings of one backing (the model's default entry
// limit): all can be made and freed, and what each costs in daemon heap is
// printed (mallinfo2), not asserted: heap figures vary with the allocator
// (and read 0 under ASan, whose allocator mallinfo2 does not see).
#include <gtest/gtest.h>
#include <malloc.h>
#include <sys/mman.h>

#include <cstdio>

#include "engine_fixture.h"

namespace vfiod::dma::testing {
namespace {

constexpr uint64_t kMappings = 65535;

// Address space for every slice, faulted in by the model's MAP_DMA only.
std::shared_ptr<const Backing> Unpopulated(uint64_t size) {
  auto memory = MapAligned(size, kPage2M, PROT_READ | PROT_WRITE,
                           MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  EXPECT_TRUE(memory) << memory.error().message();
  BackingParts parts;
  parts.kind = BackingKind::k4K;
  parts.vaddr = memory->vaddr();
  parts.size = size;
  parts.memory = std::move(*memory);
  return std::make_shared<const Backing>(Backing(std::move(parts)));
}

TEST_F(EngineTest, SixtyFiveThousandSlicesOfOneBackingAreMappedAndFreed) {
  auto backing = Unpopulated(kMappings * kPage4K);
  std::vector<uint64_t> ids;
  ids.reserve(kMappings);
  const size_t heap_before = mallinfo2().uordblks;
  for (uint64_t i = 0; i < kMappings; ++i) {
    auto report = space_->Map({.backing = backing, .offset = i * kPage4K, .size = kPage4K});
    ASSERT_TRUE(report) << "mapping " << i << ": " << report.error().message();
    ids.push_back(report->id);
  }
  const size_t heap_after = mallinfo2().uordblks;
  std::printf("engine heap per mapping: %.1f bytes (%zu mappings)\n",
              static_cast<double>(heap_after - heap_before) / kMappings, ids.size());
  EXPECT_EQ(space_->EntriesLeft(), 0u);
  EXPECT_EQ(space_->Map({.backing = backing, .size = kPage4K}).error().code, ENOSPC);
  EXPECT_EQ(ModelEntries().size(), kMappings);
  // Freed in an order that is neither the mapping order nor its reverse.
  for (uint64_t step = 0; step < kMappings; ++step) {
    const uint64_t id = ids[(step * 7919) % kMappings];
    auto unmapped = space_->Unmap(id);
    ASSERT_TRUE(unmapped) << "id " << id << ": " << unmapped.error().message();
    ASSERT_EQ(unmapped->bytes, kPage4K);
  }
  EXPECT_TRUE(ModelEntries().empty());
  EXPECT_TRUE(space_->ShadowEntries().empty());
  EXPECT_EQ(space_->allocator().allocation_count(), 0u);
  EXPECT_EQ(model_.LockedBytes(), 0u);
  // The model kernel's own share of that figure: the same entries mapped raw.
  const size_t model_before = mallinfo2().uordblks;
  for (uint64_t i = 0; i < kMappings; ++i) {
    ASSERT_TRUE(container_->Map({.vaddr = backing->vaddr() + i * kPage4K,
                                 .iova = 0x100000 + i * kPage4K,
                                 .size = kPage4K,
                                 .read = true,
                                 .write = true}));
  }
  std::printf("of which the model kernel's: %.1f bytes\n",
              static_cast<double>(mallinfo2().uordblks - model_before) / kMappings);
  ASSERT_TRUE(container_->UnmapAll());
}

}  // namespace
}  // namespace vfiod::dma::testing
