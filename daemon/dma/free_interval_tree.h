// An ordered set of disjoint closed intervals [first, last] of 64-bit space,
// searchable by position and by size in O(log n) expected time. The building
// block of IovaAllocator; knows nothing about IOMMUs.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>

namespace vfiod::dma {

/// A closed interval; closed so that the top of 64-bit space is expressible.
struct Interval {
  uint64_t first = 0;
  uint64_t last = 0;
  /// last - first: one less than the length, so [0, 2^64 - 1] does not overflow.
  [[nodiscard]] uint64_t span() const { return last - first; }
  bool operator==(const Interval&) const = default;
};

/// A treap (randomised balanced BST, expected depth O(log n)) keyed by
/// interval start, each node also holding the largest span in its subtree.
/// A treap was chosen over a hand-balanced AVL/red-black tree because split
/// and merge make insert and erase a few lines each, and the augmentation is
/// recomputed in one place (Pull). Priorities come from a fixed-seed
/// generator, so behaviour is reproducible. The caller keeps intervals
/// disjoint (Insert does not coalesce). Move-only; not thread-safe.
class FreeIntervalTree {
 public:
  FreeIntervalTree();
  FreeIntervalTree(FreeIntervalTree&&) noexcept;
  FreeIntervalTree& operator=(FreeIntervalTree&&) noexcept;
  ~FreeIntervalTree();

  /// Adds `interval`; it must not overlap a stored one (checked by assert only).
  void Insert(Interval interval);
  /// Removes the interval starting at `first`; false if there is none.
  bool Erase(uint64_t first);
  /// The interval with the greatest first <= x, if any.
  [[nodiscard]] std::optional<Interval> Floor(uint64_t x) const;
  /// The interval with the smallest first >= x, if any.
  [[nodiscard]] std::optional<Interval> Ceil(uint64_t x) const;
  /// The stored interval containing x, if any.
  [[nodiscard]] std::optional<Interval> Containing(uint64_t x) const;
  /// The interval with the smallest first >= from whose span >= min_span.
  [[nodiscard]] std::optional<Interval> FirstWithSpan(uint64_t from, uint64_t min_span) const;

  [[nodiscard]] size_t size() const { return count_; }
  [[nodiscard]] bool empty() const { return count_ == 0; }
  /// Sum of lengths, saturating at 2^64 - 1.
  [[nodiscard]] uint64_t TotalBytes() const;

 private:
  struct Node;
  using NodePtr = std::unique_ptr<Node>;
  static void Pull(Node* node);
  static NodePtr Merge(NodePtr a, NodePtr b);
  /// Splits into (first < key) and (first >= key).
  static void Split(NodePtr node, uint64_t key, NodePtr* less, NodePtr* rest);
  static const Node* FirstWithSpan(const Node* node, uint64_t from, uint64_t min_span);
  uint32_t NextPriority();

  NodePtr root_;
  size_t count_ = 0;
  uint64_t span_sum_ = 0;                       // sum of spans; disjointness keeps it below 2^64
  uint64_t rng_state_ = 0x9e3779b97f4a7c15ULL;  // xorshift64 state, fixed seed
};

}  // namespace vfiod::dma
