// The dma layer's one balanced search tree: an ordered set of items keyed by
// a 64-bit start, as a treap whose nodes live in one vector and link by
// 32-bit index (no allocation per item, and a node is two words plus the
// item). A vector rather than a deque: a hop indexes it directly instead of
// through a block map (bench/micro: the shadow map 1.35x and the allocator
// 1.2x faster than on a deque).
// ShadowMap (the kernel's entries) and FreeIntervalTree (free IOVA ranges)
// are this tree with their own item and, for the second, a per-subtree
// summary that lets a search skip whole subtrees.
//
// A treap was chosen over a hand-balanced AVL or red-black tree because split
// and merge make every operation a few lines and the summary is recomputed in
// one place (Pull). A node's priority is a hash of its pool index salted
// with a random value per tree, so nothing is stored for it, and a client
// that picks the keys (fixed IOVAs, in an order of its choosing) cannot line
// them up with the priorities to make the tree a list: the expected depth
// stays O(log n) whatever the keys. Answers never depend on the salt; only
// the shape does.
// Recursion goes as deep as the tree: a node lies about 2 ln n deep on
// average (22 at 65535 items), the deepest about twice that.
//
// Not thread-safe: the owner serialises calls.
#pragma once

#include <sys/random.h>

#include <cassert>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <type_traits>
#include <utility>
#include <vector>

namespace vfiod::dma {

/// The Summary of a tree that keeps none.
struct NoSummary {};

/// Traits describe the items:
///   using Item = ...;                        // a small copyable value
///   using Summary = ...;                     // NoSummary, or a value per subtree
///   static uint64_t Key(const Item&);       // unique within the tree
/// and, when Summary is not NoSummary:
///   static Summary Summarize(const Item&);
///   static Summary Combine(const Summary&, const Summary&);  // associative
template <typename Traits>
class Treap {
 public:
  using Item = typename Traits::Item;
  using Summary = typename Traits::Summary;
  static constexpr bool kSummarised = !std::is_same_v<Summary, NoSummary>;

  /// Adds `item`; no stored item may have its key (checked by assert only).
  void Insert(const Item& item) {
    assert(!Find(Traits::Key(item)));
    root_ = InsertAt(root_, NewNode(item));
    ++count_;
  }

  /// Removes the item keyed `key` and returns it; nullopt if there is none.
  std::optional<Item> Erase(uint64_t key) {
    std::optional<Item> gone;
    root_ = EraseFirstAt(root_, key, key, &gone);
    return gone;
  }

  /// Removes the items keyed in [first, last]; returns how many. O(k log n)
  /// for the first few, then O(k + log n): the usual caller removes one or
  /// two, which are cheapest unlinked one by one.
  size_t EraseRange(uint64_t first, uint64_t last) {
    assert(first <= last);
    for (size_t i = 0; i < kUnlinkLimit; ++i) {
      std::optional<Item> gone;
      root_ = EraseFirstAt(root_, first, last, &gone);
      if (!gone) {
        return i;
      }
    }
    const size_t before = count_ + kUnlinkLimit;
    uint32_t less = kNil;
    uint32_t rest = kNil;
    Split(root_, first, &less, &rest);
    uint32_t match = rest;
    uint32_t greater = kNil;
    if (last < kTop) {
      Split(rest, last + 1, &match, &greater);  // else the range reaches the top
    }
    Release(match);
    root_ = Merge(less, greater);
    return before - count_;
  }

  /// The item keyed exactly `key`, if any.
  [[nodiscard]] std::optional<Item> Find(uint64_t key) const {
    std::optional<Item> floor = Floor(key);
    if (floor && Traits::Key(*floor) == key) {
      return floor;
    }
    return std::nullopt;
  }

  /// The item with the greatest key <= `key`, if any.
  [[nodiscard]] std::optional<Item> Floor(uint64_t key) const {
    std::optional<Item> best;
    for (uint32_t n = root_; n != kNil;) {
      const Node& node = nodes_[n];
      if (Traits::Key(node.item) <= key) {
        best = node.item;
        n = node.right;
      } else {
        n = node.left;
      }
    }
    return best;
  }

  /// The item with the smallest key >= `key`, if any.
  [[nodiscard]] std::optional<Item> Ceil(uint64_t key) const {
    std::optional<Item> best;
    for (uint32_t n = root_; n != kNil;) {
      const Node& node = nodes_[n];
      if (Traits::Key(node.item) >= key) {
        best = node.item;
        n = node.left;
      } else {
        n = node.right;
      }
    }
    return best;
  }

  /// Calls `visit(item)` for each item keyed in [first, last], in key order.
  /// O(k + log n) for k visited.
  template <typename Visit>
  void ForEachIn(uint64_t first, uint64_t last, Visit&& visit) const {
    VisitAt(root_, first, last, visit);
  }

  /// The item with the smallest key >= `from` for which `fits(item)` holds.
  /// A subtree whose summary fails `may_fit(summary)` is skipped whole, so
  /// `may_fit` must hold for every subtree holding an item that fits.
  template <typename MayFit, typename Fits>
  [[nodiscard]] std::optional<Item> FindFirst(uint64_t from, const MayFit& may_fit,
                                              const Fits& fits) const {
    static_assert(kSummarised, "FindFirst prunes by the summary");
    const uint32_t n = FindFirstAt(root_, from, may_fit, fits);
    if (n == kNil) {
      return std::nullopt;
    }
    return nodes_[n].item;
  }

  void Clear() {
    nodes_.clear();
    free_.clear();
    root_ = kNil;
    count_ = 0;
  }
  [[nodiscard]] size_t size() const { return count_; }
  [[nodiscard]] bool empty() const { return count_ == 0; }

 private:
  static constexpr uint32_t kNil = std::numeric_limits<uint32_t>::max();
  static constexpr uint64_t kTop = std::numeric_limits<uint64_t>::max();
  static constexpr size_t kUnlinkLimit = 8;  // items EraseRange unlinks one by one

  struct Node {
    Item item;
    uint32_t left = kNil;
    uint32_t right = kNil;
    [[no_unique_address]] Summary summary{};  // of the subtree; empty for NoSummary
  };

 public:
  /// A node's size, for owners that promise a footprint per item.
  static constexpr size_t kNodeBytes = sizeof(Node);

 private:
  // A node's priority (max-heap order): a mix of its pool index and the
  // tree's salt (splitmix64's finaliser, a bijection, so no two nodes tie).
  // A reused node gets the same priority again.
  [[nodiscard]] uint64_t Priority(uint32_t index) const { return Mix(index + salt_); }
  static uint64_t Mix(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  // A random salt per tree (getrandom; the clock and the tree's address if
  // that fails), so no one can predict the priorities.
  uint64_t RandomSalt() const {
    uint64_t salt = 0;
    if (::getrandom(&salt, sizeof(salt), GRND_NONBLOCK) != static_cast<ssize_t>(sizeof(salt))) {
      salt =
          Mix(static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count()) ^
              reinterpret_cast<uintptr_t>(this));
    }
    return salt;
  }

  uint32_t NewNode(const Item& item) {
    uint32_t index = 0;
    if (free_.empty()) {
      assert(nodes_.size() < kNil);
      index = static_cast<uint32_t>(nodes_.size());
      nodes_.emplace_back();  // may move the pool: no Node& is held across this call
    } else {
      index = free_.back();
      free_.pop_back();
    }
    nodes_[index] = Node{.item = item};
    Pull(index);
    return index;
  }

  void Pull(uint32_t n) {
    if constexpr (kSummarised) {
      Node& node = nodes_[n];
      Summary summary = Traits::Summarize(node.item);
      if (node.left != kNil) {
        summary = Traits::Combine(nodes_[node.left].summary, summary);
      }
      if (node.right != kNil) {
        summary = Traits::Combine(summary, nodes_[node.right].summary);
      }
      node.summary = summary;
    }
  }

  /// Splits the tree at `n` into (key < `key`) and (key >= `key`).
  void Split(uint32_t n, uint64_t key, uint32_t* less, uint32_t* rest) {
    if (n == kNil) {
      *less = kNil;
      *rest = kNil;
      return;
    }
    Node& node = nodes_[n];
    if (Traits::Key(node.item) < key) {
      Split(node.right, key, &node.right, rest);
      *less = n;
    } else {
      Split(node.left, key, less, &node.left);
      *rest = n;
    }
    Pull(n);
  }

  /// Joins two trees, every key of `a` below every key of `b`.
  uint32_t Merge(uint32_t a, uint32_t b) {
    if (a == kNil) {
      return b;
    }
    if (b == kNil) {
      return a;
    }
    if (Priority(a) >= Priority(b)) {
      nodes_[a].right = Merge(nodes_[a].right, b);
      Pull(a);
      return a;
    }
    nodes_[b].left = Merge(a, nodes_[b].left);
    Pull(b);
    return b;
  }

  /// Puts node `fresh` into the tree at `n`: below the nodes of higher
  /// priority, with the subtree found there split around it.
  uint32_t InsertAt(uint32_t n, uint32_t fresh) {
    if (n == kNil) {
      return fresh;
    }
    const uint64_t key = Traits::Key(nodes_[fresh].item);
    if (Priority(fresh) > Priority(n)) {
      Split(n, key, &nodes_[fresh].left, &nodes_[fresh].right);
      Pull(fresh);
      return fresh;
    }
    Node& node = nodes_[n];
    if (key < Traits::Key(node.item)) {
      node.left = InsertAt(node.left, fresh);
    } else {
      node.right = InsertAt(node.right, fresh);
    }
    Pull(n);
    return n;
  }

  /// Removes the item with the smallest key >= `first` from the tree at `n`
  /// if that key is <= `last`, into `*gone` (which starts empty), in one
  /// descent. Erase is the case first == last.
  uint32_t EraseFirstAt(uint32_t n, uint64_t first, uint64_t last, std::optional<Item>* gone) {
    if (n == kNil) {
      return kNil;
    }
    Node& node = nodes_[n];
    const uint64_t key = Traits::Key(node.item);
    if (key < first) {
      node.right = EraseFirstAt(node.right, first, last, gone);
    } else {
      node.left = EraseFirstAt(node.left, first, last, gone);
      if (!*gone) {
        if (key > last) {
          return n;  // nothing in range: the tree is unchanged
        }
        *gone = node.item;
        const uint32_t joined = Merge(node.left, node.right);
        free_.push_back(n);
        --count_;
        return joined;
      }
    }
    if (*gone) {
      Pull(n);
    }
    return n;
  }

  /// Returns the nodes of the tree at `n` to the free list.
  void Release(uint32_t n) {
    if (n == kNil) {
      return;
    }
    Release(nodes_[n].left);
    Release(nodes_[n].right);
    free_.push_back(n);
    --count_;
  }

  template <typename Visit>
  void VisitAt(uint32_t n, uint64_t first, uint64_t last, Visit& visit) const {
    if (n == kNil) {
      return;
    }
    const Node& node = nodes_[n];
    const uint64_t key = Traits::Key(node.item);
    if (key > first) {
      VisitAt(node.left, first, last, visit);
    }
    if (key >= first && key <= last) {
      visit(node.item);
    }
    if (key < last) {
      VisitAt(node.right, first, last, visit);
    }
  }

  // A left subtree is entered only when keys >= from may be in it, and a
  // subtree failing may_fit is skipped whole, so the walk follows O(depth)
  // paths when may_fit is exact for the subtree.
  template <typename MayFit, typename Fits>
  uint32_t FindFirstAt(uint32_t n, uint64_t from, const MayFit& may_fit, const Fits& fits) const {
    if (n == kNil || !may_fit(nodes_[n].summary)) {
      return kNil;
    }
    const Node& node = nodes_[n];
    if (Traits::Key(node.item) >= from) {
      if (const uint32_t left = FindFirstAt(node.left, from, may_fit, fits); left != kNil) {
        return left;
      }
      if (fits(node.item)) {
        return n;
      }
    }
    return FindFirstAt(node.right, from, may_fit, fits);
  }

  // The pool: links are indexes, so growing it moves nothing that matters.
  std::vector<Node> nodes_;
  std::vector<uint32_t> free_;  // indexes of unused nodes
  uint32_t root_ = kNil;
  size_t count_ = 0;
  uint64_t salt_ = RandomSalt();

  friend struct TreapProbe;  // the tests' view of the shape (treap_test.cc)
};

}  // namespace vfiod::dma
