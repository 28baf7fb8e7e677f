#include "dma/shadow_map.h"

#include <cassert>
#include <limits>

namespace vfiod::dma {

uint32_t ShadowMap::NextPriority() {
  rng_state_ ^= rng_state_ << 13;
  rng_state_ ^= rng_state_ >> 7;
  rng_state_ ^= rng_state_ << 17;
  return static_cast<uint32_t>(rng_state_ >> 32);
}

uint32_t ShadowMap::NewNode(uint64_t iova, uint64_t size, uint32_t owner) {
  uint32_t index = 0;
  if (free_.empty()) {
    assert(nodes_.size() < kNil);
    index = static_cast<uint32_t>(nodes_.size());
    nodes_.emplace_back();
  } else {
    index = free_.back();
    free_.pop_back();
  }
  nodes_[index] = Node{.iova = iova, .size = size, .owner = owner, .priority = NextPriority()};
  return index;
}

void ShadowMap::Split(uint32_t node, uint64_t key, uint32_t* less, uint32_t* rest) {
  if (node == kNil) {
    *less = kNil;
    *rest = kNil;
    return;
  }
  Node& n = nodes_[node];
  if (n.iova < key) {
    Split(n.right, key, &n.right, rest);
    *less = node;
  } else {
    Split(n.left, key, less, &n.left);
    *rest = node;
  }
}

uint32_t ShadowMap::Merge(uint32_t a, uint32_t b) {
  if (a == kNil) {
    return b;
  }
  if (b == kNil) {
    return a;
  }
  if (nodes_[a].priority >= nodes_[b].priority) {
    nodes_[a].right = Merge(nodes_[a].right, b);
    return a;
  }
  nodes_[b].left = Merge(a, nodes_[b].left);
  return b;
}

void ShadowMap::Insert(uint64_t iova, uint64_t size, uint32_t owner) {
  assert(In(iova, iova).empty());
  const uint32_t node = NewNode(iova, size, owner);
  // Descend while the path's priorities are higher; the subtree found there
  // is split around the new node, which takes its place.
  uint32_t* link = &root_;
  while (*link != kNil && nodes_[*link].priority >= nodes_[node].priority) {
    Node& n = nodes_[*link];
    link = iova < n.iova ? &n.left : &n.right;
  }
  Split(*link, iova, &nodes_[node].left, &nodes_[node].right);
  *link = node;
  ++count_;
}

uint32_t* ShadowMap::LinkToFirstAtOrAbove(uint64_t iova) {
  uint32_t* best = nullptr;
  uint32_t* link = &root_;
  while (*link != kNil) {
    Node& n = nodes_[*link];
    if (n.iova >= iova) {
      best = link;
      link = &n.left;
    } else {
      link = &n.right;
    }
  }
  return best;
}

void ShadowMap::Release(uint32_t node) {
  if (node == kNil) {
    return;
  }
  Release(nodes_[node].left);
  Release(nodes_[node].right);
  free_.push_back(node);
  --count_;
}

size_t ShadowMap::EraseRange(uint64_t iova, uint64_t size) {
  assert(size > 0);
  constexpr uint64_t kTop = std::numeric_limits<uint64_t>::max();
  const uint64_t last = size - 1 > kTop - iova ? kTop : iova + (size - 1);
  // The usual unmap removes one or a few entries: unlink them one by one
  // (each O(log n)); a wide range is cut out with two splits instead.
  for (int i = 0; i < kUnlinkLimit; ++i) {
    uint32_t* link = LinkToFirstAtOrAbove(iova);
    if (link == nullptr || nodes_[*link].iova > last) {
      return static_cast<size_t>(i);
    }
    const uint32_t gone = *link;
    *link = Merge(nodes_[gone].left, nodes_[gone].right);
    free_.push_back(gone);
    --count_;
  }
  const size_t before = count_ + kUnlinkLimit;
  uint32_t less = kNil;
  uint32_t rest = kNil;
  Split(root_, iova, &less, &rest);
  uint32_t match = rest;
  uint32_t greater = kNil;
  if (last < kTop) {
    Split(rest, last + 1, &match, &greater);  // else the range reaches the top
  }
  Release(match);
  root_ = Merge(less, greater);
  return before - count_;
}

void ShadowMap::Collect(uint32_t node, uint64_t first, uint64_t last, uint32_t owner,
                        std::vector<ShadowEntry>& out) const {
  if (node == kNil) {
    return;
  }
  const Node& n = nodes_[node];
  if (n.iova > first) {
    Collect(n.left, first, last, owner, out);
  }
  if (n.iova >= first && n.iova <= last && (owner == 0 || n.owner == owner)) {
    out.push_back({n.iova, n.size, n.owner});
  }
  if (n.iova < last) {
    Collect(n.right, first, last, owner, out);
  }
}

std::vector<ShadowEntry> ShadowMap::In(uint64_t first, uint64_t last, uint32_t owner) const {
  std::vector<ShadowEntry> out;
  Collect(root_, first, last, owner, out);
  return out;
}

std::vector<ShadowEntry> ShadowMap::All() const {
  std::vector<ShadowEntry> out;
  out.reserve(count_);
  Collect(root_, 0, std::numeric_limits<uint64_t>::max(), 0, out);
  return out;
}

void ShadowMap::Clear() {
  nodes_.clear();
  free_.clear();
  root_ = kNil;
  count_ = 0;
}

}  // namespace vfiod::dma
