// An ordered set of disjoint closed intervals [first, last] of 64-bit space,
// searchable by position and by size in O(log n) expected time. The building
// block of IovaAllocator; knows nothing about IOMMUs.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <optional>

#include "dma/treap.h"

namespace vfiod::dma {

/// A closed interval; closed so that the top of 64-bit space is expressible.
struct Interval {
  uint64_t first = 0;
  uint64_t last = 0;
  /// last - first: one less than the length, so [0, 2^64 - 1] does not overflow.
  [[nodiscard]] uint64_t span() const { return last - first; }
  bool operator==(const Interval&) const = default;
};

/// A Treap (dma/treap.h) keyed by interval start, each subtree summarised by
/// the largest span in it, so a search by size skips subtrees with no room.
/// The caller keeps intervals disjoint (Insert does not coalesce).
/// Not thread-safe.
class FreeIntervalTree {
 public:
  /// Adds `interval`; it must not overlap a stored one (checked by assert only).
  void Insert(Interval interval);
  /// Removes the interval starting at `first`; false if there is none.
  bool Erase(uint64_t first);
  /// The interval with the greatest first <= x, if any.
  [[nodiscard]] std::optional<Interval> Floor(uint64_t x) const { return tree_.Floor(x); }
  /// The interval with the smallest first >= x, if any.
  [[nodiscard]] std::optional<Interval> Ceil(uint64_t x) const { return tree_.Ceil(x); }
  /// The stored interval containing x, if any.
  [[nodiscard]] std::optional<Interval> Containing(uint64_t x) const;
  /// The interval with the smallest first >= from whose span >= min_span.
  [[nodiscard]] std::optional<Interval> FirstWithSpan(uint64_t from, uint64_t min_span) const;

  [[nodiscard]] size_t size() const { return tree_.size(); }
  [[nodiscard]] bool empty() const { return tree_.empty(); }
  /// Sum of lengths, saturating at 2^64 - 1.
  [[nodiscard]] uint64_t TotalBytes() const;

 private:
  struct Traits {
    using Item = Interval;
    using Summary = uint64_t;  // the largest span in the subtree
    static uint64_t Key(const Interval& interval) { return interval.first; }
    static uint64_t Summarize(const Interval& interval) { return interval.span(); }
    static uint64_t Combine(uint64_t a, uint64_t b) { return std::max(a, b); }
  };

  Treap<Traits> tree_;
  uint64_t span_sum_ = 0;  // sum of spans; disjointness keeps it below 2^64
};

}  // namespace vfiod::dma
