#include "dma/free_interval_tree.h"

#include <cassert>
#include <limits>

namespace vfiod::dma {

uint64_t FreeIntervalTree::TotalBytes() const {
  // span_sum_ + size() is at most 2^64: only the whole space saturates.
  if (span_sum_ > std::numeric_limits<uint64_t>::max() - size()) {
    return std::numeric_limits<uint64_t>::max();
  }
  return span_sum_ + size();
}

void FreeIntervalTree::Insert(Interval interval) {
  assert(interval.first <= interval.last);
  assert(!Containing(interval.first) && !Containing(interval.last));
  tree_.Insert(interval);
  span_sum_ += interval.span();
}

bool FreeIntervalTree::Erase(uint64_t first) {
  std::optional<Interval> gone = tree_.Erase(first);
  if (!gone) {
    return false;
  }
  span_sum_ -= gone->span();
  return true;
}

std::optional<Interval> FreeIntervalTree::Containing(uint64_t x) const {
  std::optional<Interval> floor = Floor(x);
  if (floor && floor->last >= x) {
    return floor;
  }
  return std::nullopt;
}

std::optional<Interval> FreeIntervalTree::FirstWithSpan(uint64_t from, uint64_t min_span) const {
  return tree_.FindFirst(
      from, [min_span](uint64_t max_span) { return max_span >= min_span; },
      [min_span](const Interval& interval) { return interval.span() >= min_span; });
}

}  // namespace vfiod::dma
