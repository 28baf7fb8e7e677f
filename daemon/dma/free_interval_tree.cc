#include "dma/free_interval_tree.h"

#include <algorithm>
#include <cassert>
#include <limits>
#include <utility>

namespace vfiod::dma {

struct FreeIntervalTree::Node {
  Interval interval;
  uint32_t priority = 0;  // max-heap order
  uint64_t max_span = 0;  // largest span in this subtree
  NodePtr left;
  NodePtr right;
};

FreeIntervalTree::FreeIntervalTree() = default;
FreeIntervalTree::FreeIntervalTree(FreeIntervalTree&&) noexcept = default;
FreeIntervalTree& FreeIntervalTree::operator=(FreeIntervalTree&&) noexcept = default;
FreeIntervalTree::~FreeIntervalTree() = default;

uint64_t FreeIntervalTree::TotalBytes() const {
  // span_sum_ + count_ is at most 2^64: only the whole space saturates.
  if (span_sum_ > std::numeric_limits<uint64_t>::max() - count_) {
    return std::numeric_limits<uint64_t>::max();
  }
  return span_sum_ + count_;
}

uint32_t FreeIntervalTree::NextPriority() {
  rng_state_ ^= rng_state_ << 13;
  rng_state_ ^= rng_state_ >> 7;
  rng_state_ ^= rng_state_ << 17;
  return static_cast<uint32_t>(rng_state_ >> 32);
}

void FreeIntervalTree::Pull(Node* node) {
  uint64_t best = node->interval.span();
  if (node->left) {
    best = std::max(best, node->left->max_span);
  }
  if (node->right) {
    best = std::max(best, node->right->max_span);
  }
  node->max_span = best;
}

FreeIntervalTree::NodePtr FreeIntervalTree::Merge(NodePtr a, NodePtr b) {
  if (!a) {
    return b;
  }
  if (!b) {
    return a;
  }
  if (a->priority >= b->priority) {
    a->right = Merge(std::move(a->right), std::move(b));
    Pull(a.get());
    return a;
  }
  b->left = Merge(std::move(a), std::move(b->left));
  Pull(b.get());
  return b;
}

void FreeIntervalTree::Split(NodePtr node, uint64_t key, NodePtr* less, NodePtr* rest) {
  if (!node) {
    less->reset();
    rest->reset();
    return;
  }
  if (node->interval.first < key) {
    NodePtr right = std::move(node->right);
    Split(std::move(right), key, &node->right, rest);
    Pull(node.get());
    *less = std::move(node);
  } else {
    NodePtr left = std::move(node->left);
    Split(std::move(left), key, less, &node->left);
    Pull(node.get());
    *rest = std::move(node);
  }
}

void FreeIntervalTree::Insert(Interval interval) {
  assert(interval.first <= interval.last);
  assert(!Containing(interval.first) && !Containing(interval.last));
  auto node = std::make_unique<Node>();
  node->interval = interval;
  node->priority = NextPriority();
  node->max_span = interval.span();
  NodePtr less;
  NodePtr rest;
  Split(std::move(root_), interval.first, &less, &rest);
  root_ = Merge(Merge(std::move(less), std::move(node)), std::move(rest));
  ++count_;
  span_sum_ += interval.span();
}

bool FreeIntervalTree::Erase(uint64_t first) {
  NodePtr less;
  NodePtr rest;
  Split(std::move(root_), first, &less, &rest);
  NodePtr match;
  NodePtr greater;
  if (first == std::numeric_limits<uint64_t>::max()) {
    match = std::move(rest);  // nothing can start above the last address
  } else {
    Split(std::move(rest), first + 1, &match, &greater);
  }
  bool found = match != nullptr;
  if (found) {
    --count_;
    span_sum_ -= match->interval.span();
  }
  root_ = Merge(std::move(less), std::move(greater));
  return found;
}

std::optional<Interval> FreeIntervalTree::Floor(uint64_t x) const {
  std::optional<Interval> best;
  for (const Node* n = root_.get(); n != nullptr;) {
    if (n->interval.first <= x) {
      best = n->interval;
      n = n->right.get();
    } else {
      n = n->left.get();
    }
  }
  return best;
}

std::optional<Interval> FreeIntervalTree::Ceil(uint64_t x) const {
  std::optional<Interval> best;
  for (const Node* n = root_.get(); n != nullptr;) {
    if (n->interval.first >= x) {
      best = n->interval;
      n = n->left.get();
    } else {
      n = n->right.get();
    }
  }
  return best;
}

std::optional<Interval> FreeIntervalTree::Containing(uint64_t x) const {
  std::optional<Interval> floor = Floor(x);
  if (floor && floor->last >= x) {
    return floor;
  }
  return std::nullopt;
}

// Leftmost node with first >= from and span >= min_span. A subtree whose
// max_span is too small is skipped whole; a left subtree is entered only when
// keys >= from may be in it, so the walk follows O(depth) paths.
const FreeIntervalTree::Node* FreeIntervalTree::FirstWithSpan(const Node* node, uint64_t from,
                                                              uint64_t min_span) {
  if (node == nullptr || node->max_span < min_span) {
    return nullptr;
  }
  if (node->interval.first >= from) {
    if (const Node* left = FirstWithSpan(node->left.get(), from, min_span)) {
      return left;
    }
    if (node->interval.span() >= min_span) {
      return node;
    }
  }
  return FirstWithSpan(node->right.get(), from, min_span);
}

std::optional<Interval> FreeIntervalTree::FirstWithSpan(uint64_t from, uint64_t min_span) const {
  const Node* node = FirstWithSpan(root_.get(), from, min_span);
  if (node == nullptr) {
    return std::nullopt;
  }
  return node->interval;
}

}  // namespace vfiod::dma
