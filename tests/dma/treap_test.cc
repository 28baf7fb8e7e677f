// Treap, the dma layer's one balanced tree, against a std::map model: random
// inserts, erases and range erases (wide enough to take the split path), every
// query after each step, and the per-subtree summary kept right by all of them.
#include "dma/treap.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <map>
#include <optional>
#include <random>
#include <vector>

namespace vfiod::dma {

// The shape of a tree, which its interface keeps to itself (a friend).
struct TreapProbe {
  template <typename Traits>
  static size_t Height(const Treap<Traits>& tree) {
    return HeightAt(tree, tree.root_);
  }
  template <typename Traits>
  static size_t HeightAt(const Treap<Traits>& tree, uint32_t n) {
    if (n == Treap<Traits>::kNil) {
      return 0;
    }
    return 1 + std::max(HeightAt(tree, tree.nodes_[n].left), HeightAt(tree, tree.nodes_[n].right));
  }
  /// What node `index`'s priority would be with no salt.
  template <typename Traits>
  static uint64_t UnsaltedPriority(uint32_t index) {
    return Treap<Traits>::Mix(index);
  }
};

namespace {

struct Weighted {
  uint64_t key = 0;
  uint32_t weight = 0;
  bool operator==(const Weighted&) const = default;
};

struct MaxWeight {
  using Item = Weighted;
  using Summary = uint32_t;
  static uint64_t Key(const Weighted& item) { return item.key; }
  static uint32_t Summarize(const Weighted& item) { return item.weight; }
  static uint32_t Combine(uint32_t a, uint32_t b) { return std::max(a, b); }
};

using Model = std::map<uint64_t, uint32_t>;

std::optional<Weighted> At(Model::const_iterator it, const Model& model) {
  if (it == model.end()) {
    return std::nullopt;
  }
  return Weighted{it->first, it->second};
}

// Every query of `tree` at `probe` equals the model's answer.
void ExpectSame(const Treap<MaxWeight>& tree, const Model& model, uint64_t probe, uint32_t weight) {
  ASSERT_EQ(tree.size(), model.size());
  EXPECT_EQ(tree.Ceil(probe), At(model.lower_bound(probe), model));
  auto above = model.upper_bound(probe);
  EXPECT_EQ(tree.Floor(probe), above == model.begin() ? std::nullopt : At(std::prev(above), model));
  EXPECT_EQ(tree.Find(probe), At(model.find(probe), model));
  auto heavy = std::find_if(model.lower_bound(probe), model.end(),
                            [&](const auto& entry) { return entry.second >= weight; });
  EXPECT_EQ(tree.FindFirst(
                probe, [&](uint32_t most) { return most >= weight; },
                [&](const Weighted& item) { return item.weight >= weight; }),
            At(heavy, model));
  std::vector<Weighted> in;
  tree.ForEachIn(probe, probe + 5000, [&](const Weighted& item) { in.push_back(item); });
  std::vector<Weighted> expected;
  for (auto it = model.lower_bound(probe); it != model.end() && it->first <= probe + 5000; ++it) {
    expected.push_back({it->first, it->second});
  }
  EXPECT_EQ(in, expected);
}

TEST(Treap, MatchesAMapModelUnderRandomOperations) {
  std::mt19937_64 rng(7);
  Treap<MaxWeight> tree;
  Model model;
  for (int step = 0; step < 20000; ++step) {
    const uint64_t key = rng() % 100000;
    switch (rng() % 4) {
      case 0:
      case 1:
        if (!model.contains(key)) {
          const auto weight = static_cast<uint32_t>(rng() % 1000);
          tree.Insert({key, weight});
          model[key] = weight;
        }
        break;
      case 2: {
        auto it = model.find(key);
        EXPECT_EQ(tree.Erase(key), At(it, model));
        if (it != model.end()) {
          model.erase(it);
        }
        break;
      }
      default: {
        const uint64_t last = key + rng() % (step % 50 == 0 ? 20000 : 300);
        auto first_it = model.lower_bound(key);
        auto end_it = model.upper_bound(last);
        const auto count = static_cast<size_t>(std::distance(first_it, end_it));
        EXPECT_EQ(tree.EraseRange(key, last), count);
        model.erase(first_it, end_it);
      }
    }
    ExpectSame(tree, model, rng() % 100000, static_cast<uint32_t>(rng() % 1000));
  }
}

TEST(Treap, SortedInsertsAndTheTopOfTheKeySpace) {
  // Keys in order are a plain BST's worst case; the treap stays shallow (the
  // recursion would overflow the stack under ASan otherwise).
  constexpr uint64_t kTop = std::numeric_limits<uint64_t>::max();
  Treap<MaxWeight> tree;
  for (uint64_t i = 0; i < 200000; ++i) {
    tree.Insert({kTop - 199999 + i, static_cast<uint32_t>(i)});
  }
  EXPECT_EQ(tree.Floor(kTop), (Weighted{kTop, 199999}));
  EXPECT_EQ(tree.EraseRange(kTop - 9, kTop), 10u);  // a range reaching the top
  EXPECT_EQ(tree.EraseRange(0, kTop), 199990u);
  EXPECT_TRUE(tree.empty());
  tree.Insert({kTop, 1});  // the pool's nodes are reused
  EXPECT_EQ(tree.Ceil(0), (Weighted{kTop, 1}));
  tree.Clear();
  EXPECT_EQ(tree.Ceil(0), std::nullopt);
}

TEST(Treap, KeysLinedUpWithThePublicHashDoNotMakeAList) {
  // A client that picks fixed IOVAs knows which pool index each new entry
  // gets. Were priorities the bare hash of the index, giving the highest
  // priority the lowest key, the next the next key, and so on, would make the
  // tree one long path (height n, every operation O(n), recursion n deep).
  constexpr uint32_t kItems = 20000;
  std::vector<uint32_t> by_priority(kItems);
  for (uint32_t i = 0; i < kItems; ++i) {
    by_priority[i] = i;
  }
  std::ranges::sort(by_priority, [](uint32_t a, uint32_t b) {
    return TreapProbe::UnsaltedPriority<MaxWeight>(a) > TreapProbe::UnsaltedPriority<MaxWeight>(b);
  });
  std::vector<uint64_t> key_of(kItems);
  for (uint32_t rank = 0; rank < kItems; ++rank) {
    key_of[by_priority[rank]] = rank;
  }
  Treap<MaxWeight> tree;
  for (uint32_t i = 0; i < kItems; ++i) {  // node i is the i-th inserted
    tree.Insert({key_of[i], 1});
  }
  // The salted tree is as deep as a random one: about 4.3 ln n at most
  // (43 here); a path would be 20000.
  EXPECT_LT(TreapProbe::Height(tree), 100u);
  EXPECT_EQ(tree.size(), kItems);
}

}  // namespace
}  // namespace vfiod::dma
