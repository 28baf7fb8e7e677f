// FreeIntervalTree against a std::map model, plus the edges of 64-bit space.
#include "dma/free_interval_tree.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <map>
#include <optional>
#include <random>

namespace vfiod::dma {
namespace {

constexpr uint64_t kMax = std::numeric_limits<uint64_t>::max();

TEST(FreeIntervalTree, EmptyTreeFindsNothing) {
  FreeIntervalTree tree;
  EXPECT_TRUE(tree.empty());
  EXPECT_EQ(tree.TotalBytes(), 0u);
  EXPECT_FALSE(tree.Floor(5));
  EXPECT_FALSE(tree.Ceil(0));
  EXPECT_FALSE(tree.Containing(0));
  EXPECT_FALSE(tree.FirstWithSpan(0, 0));
  EXPECT_FALSE(tree.Erase(0));
}

TEST(FreeIntervalTree, QueriesByPositionAndSpan) {
  FreeIntervalTree tree;
  tree.Insert({100, 199});  // span 99
  tree.Insert({10, 19});    // span 9
  tree.Insert({300, 999});  // span 699
  EXPECT_EQ(tree.size(), 3u);
  EXPECT_EQ(tree.TotalBytes(), 10u + 100u + 700u);
  EXPECT_EQ(tree.Floor(150), (Interval{100, 199}));
  EXPECT_EQ(tree.Floor(9), std::nullopt);
  EXPECT_EQ(tree.Ceil(20), (Interval{100, 199}));
  EXPECT_EQ(tree.Ceil(1000), std::nullopt);
  EXPECT_EQ(tree.Containing(199), (Interval{100, 199}));
  EXPECT_EQ(tree.Containing(200), std::nullopt);
  EXPECT_EQ(tree.FirstWithSpan(0, 9), (Interval{10, 19}));
  EXPECT_EQ(tree.FirstWithSpan(0, 10), (Interval{100, 199}));
  EXPECT_EQ(tree.FirstWithSpan(11, 9), (Interval{100, 199}));
  EXPECT_EQ(tree.FirstWithSpan(101, 9), (Interval{300, 999}));
  EXPECT_EQ(tree.FirstWithSpan(0, 700), std::nullopt);
  EXPECT_TRUE(tree.Erase(100));
  EXPECT_FALSE(tree.Erase(100));
  EXPECT_EQ(tree.FirstWithSpan(0, 10), (Interval{300, 999}));
  EXPECT_EQ(tree.TotalBytes(), 710u);
}

TEST(FreeIntervalTree, WholeSpaceSaturatesAndTopEdgeWorks) {
  FreeIntervalTree tree;
  tree.Insert({0, kMax});
  EXPECT_EQ(tree.TotalBytes(), kMax);  // 2^64 saturates
  EXPECT_EQ(tree.Containing(kMax), (Interval{0, kMax}));
  EXPECT_EQ(tree.FirstWithSpan(0, kMax), (Interval{0, kMax}));
  EXPECT_TRUE(tree.Erase(0));
  tree.Insert({kMax, kMax});
  EXPECT_EQ(tree.TotalBytes(), 1u);
  EXPECT_EQ(tree.Floor(kMax), (Interval{kMax, kMax}));
  EXPECT_EQ(tree.Ceil(kMax), (Interval{kMax, kMax}));
  EXPECT_TRUE(tree.Erase(kMax));
  EXPECT_TRUE(tree.empty());
}

// Random operations checked against a std::map, including FirstWithSpan's
// "lowest start >= from with span >= s", which the map answers by scanning.
TEST(FreeIntervalTree, MatchesMapModelUnderRandomOperations) {
  std::mt19937_64 rng(42);
  FreeIntervalTree tree;
  std::map<uint64_t, uint64_t> model;  // first -> last
  for (int step = 0; step < 20000; ++step) {
    uint64_t slot = rng() % 2000;  // each slot of 1000 addresses holds at most one
    auto in_slot = model.lower_bound(slot * 1000);
    if (in_slot != model.end() && in_slot->first < slot * 1000 + 1000) {
      EXPECT_TRUE(tree.Erase(in_slot->first));
      model.erase(in_slot);
    } else {
      uint64_t first = slot * 1000 + rng() % 500;
      uint64_t last = first + rng() % 500;
      tree.Insert({first, last});
      model[first] = last;
    }
    uint64_t probe = rng() % 2'000'000;
    uint64_t span = rng() % 600;
    std::optional<Interval> expect;
    for (auto it = model.lower_bound(probe); it != model.end(); ++it) {
      if (it->second - it->first >= span) {
        expect = Interval{it->first, it->second};
        break;
      }
    }
    ASSERT_EQ(tree.FirstWithSpan(probe, span), expect) << "step " << step;
    auto floor = model.upper_bound(probe);
    std::optional<Interval> expect_floor;
    if (floor != model.begin()) {
      --floor;
      expect_floor = Interval{floor->first, floor->second};
    }
    ASSERT_EQ(tree.Floor(probe), expect_floor);
  }
  EXPECT_EQ(tree.size(), model.size());
}

}  // namespace
}  // namespace vfiod::dma
