// ShadowMap against a std::map doing the same: inserts, range erases and
// range queries (by owner or anyone's) agree after every random step, the
// top of 64-bit space is reachable, and freed nodes are reused.
#include "dma/shadow_map.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <map>
#include <random>
#include <vector>

namespace vfiod::dma {
namespace {

constexpr uint64_t kPage = 4096;
constexpr uint64_t kMax = std::numeric_limits<uint64_t>::max();

using Reference = std::map<uint64_t, ShadowEntry>;

std::vector<ShadowEntry> ReferenceIn(const Reference& ref, uint64_t first, uint64_t last,
                                     uint32_t owner) {
  std::vector<ShadowEntry> out;
  for (auto it = ref.lower_bound(first); it != ref.end() && it->first <= last; ++it) {
    if (owner == 0 || it->second.owner == owner) {
      out.push_back(it->second);
    }
  }
  return out;
}

TEST(ShadowMap, StartsEmpty) {
  ShadowMap map;
  EXPECT_TRUE(map.empty());
  EXPECT_TRUE(map.All().empty());
  EXPECT_TRUE(map.In(0, kMax).empty());
  EXPECT_EQ(map.EraseRange(0, kPage), 0u);
}

TEST(ShadowMap, QueriesAreInIovaOrderAndFilterByOwner) {
  ShadowMap map;
  map.Insert(3 * kPage, kPage, 2);
  map.Insert(1 * kPage, kPage, 1);
  map.Insert(5 * kPage, 2 * kPage, 1);
  EXPECT_EQ(map.size(), 3u);
  EXPECT_EQ(map.All(),
            (std::vector<ShadowEntry>{
                {1 * kPage, kPage, 1}, {3 * kPage, kPage, 2}, {5 * kPage, 2 * kPage, 1}}));
  EXPECT_EQ(map.In(0, kMax, 1),
            (std::vector<ShadowEntry>{{1 * kPage, kPage, 1}, {5 * kPage, 2 * kPage, 1}}));
  // Bounds are inclusive, on the entries' starts.
  EXPECT_EQ(map.In(3 * kPage, 5 * kPage),
            (std::vector<ShadowEntry>{{3 * kPage, kPage, 2}, {5 * kPage, 2 * kPage, 1}}));
  EXPECT_TRUE(map.In(3 * kPage + 1, 5 * kPage - 1).empty());
}

TEST(ShadowMap, EraseRangeRemovesTheEntriesStartingInIt) {
  ShadowMap map;
  for (uint64_t i = 0; i < 8; ++i) {
    map.Insert(i * kPage, kPage, static_cast<uint32_t>(i + 1));
  }
  EXPECT_EQ(map.EraseRange(2 * kPage, 3 * kPage), 3u);  // pages 2, 3, 4
  EXPECT_EQ(map.size(), 5u);
  EXPECT_EQ(map.In(0, kMax).front().iova, 0u);
  EXPECT_EQ(map.In(2 * kPage, 4 * kPage).size(), 0u);
  EXPECT_EQ(map.In(5 * kPage, 5 * kPage).size(), 1u);
}

TEST(ShadowMap, TheTopOfTheAddressSpaceIsReachable) {
  ShadowMap map;
  map.Insert(kMax - kPage + 1, kPage, 7);
  map.Insert(0, kPage, 8);
  EXPECT_EQ(map.In(kMax - kPage + 1, kMax).size(), 1u);
  EXPECT_EQ(map.EraseRange(kMax - kPage + 1, kPage), 1u);  // the range ends at 2^64
  EXPECT_EQ(map.All(), (std::vector<ShadowEntry>{{0, kPage, 8}}));
}

TEST(ShadowMap, ClearEmptiesAndTheMapIsUsableAfterwards) {
  ShadowMap map;
  map.Insert(0, kPage, 1);
  map.Insert(kPage, kPage, 1);
  map.Clear();
  EXPECT_TRUE(map.empty());
  EXPECT_TRUE(map.All().empty());
  map.Insert(kPage, kPage, 2);
  EXPECT_EQ(map.All(), (std::vector<ShadowEntry>{{kPage, kPage, 2}}));
}

TEST(ShadowMap, MatchesAStdMapOverRandomOperations) {
  ShadowMap map;
  Reference ref;
  std::mt19937_64 rng(42);
  constexpr uint64_t kSlots = 512;  // IOVA pages used
  for (int step = 0; step < 20000; ++step) {
    const uint64_t page = rng() % kSlots;
    switch (rng() % 4) {
      case 0:
      case 1: {  // insert where nothing starts
        if (!ref.contains(page * kPage)) {
          const ShadowEntry e{page * kPage, kPage * (1 + rng() % 3),
                              static_cast<uint32_t>(1 + rng() % 5)};
          map.Insert(e.iova, e.size, e.owner);
          ref[e.iova] = e;
        }
        break;
      }
      case 2: {  // erase a range
        const uint64_t pages = 1 + rng() % 16;
        auto first = ref.lower_bound(page * kPage);
        auto last = ref.lower_bound((page + pages) * kPage);
        const auto expected = static_cast<size_t>(std::distance(first, last));
        ASSERT_EQ(map.EraseRange(page * kPage, pages * kPage), expected) << "step " << step;
        ref.erase(first, last);
        break;
      }
      default: {  // query
        const uint64_t last = page + rng() % 64;
        const auto owner = static_cast<uint32_t>(rng() % 6);
        ASSERT_EQ(map.In(page * kPage, last * kPage, owner),
                  ReferenceIn(ref, page * kPage, last * kPage, owner))
            << "step " << step;
      }
    }
    ASSERT_EQ(map.size(), ref.size()) << "step " << step;
  }
  EXPECT_EQ(map.All(), ReferenceIn(ref, 0, kMax, 0));
}

}  // namespace
}  // namespace vfiod::dma
