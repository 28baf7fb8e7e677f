// The engine's shadow of what the kernel holds: one entry per MAP_DMA entry,
// ordered by IOVA, each naming the mapping that owns it. Kept compact because
// a container may hold 65535 entries: nodes live in a deque and link by
// 32-bit index (32 bytes per entry, no allocation per entry).
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <vector>

namespace vfiod::dma {

/// One kernel entry: [iova, iova + size), owned by mapping slot `owner`.
struct ShadowEntry {
  uint64_t iova = 0;
  uint64_t size = 0;
  uint32_t owner = 0;  ///< the owning mapping's slot number (never 0)
  bool operator==(const ShadowEntry&) const = default;
};

/// A treap keyed by IOVA (expected depth O(log n); priorities from a
/// fixed-seed generator, so behaviour is reproducible). The caller keeps the
/// entries disjoint (the kernel refuses overlaps before an entry is added).
/// Not thread-safe: the owning DmaSpace's strand serialises calls.
class ShadowMap {
 public:
  /// Adds an entry; none may start at the same IOVA (checked by assert only).
  void Insert(uint64_t iova, uint64_t size, uint32_t owner);
  /// Removes the entries starting in [iova, iova + size - 1] (size > 0);
  /// returns how many. O(k + log n) for k removed.
  size_t EraseRange(uint64_t iova, uint64_t size);
  /// The entries starting in [first, last], in IOVA order; only those of
  /// `owner` unless it is 0. O(k + log n) for k visited.
  [[nodiscard]] std::vector<ShadowEntry> In(uint64_t first, uint64_t last,
                                            uint32_t owner = 0) const;
  /// Every entry, in IOVA order.
  [[nodiscard]] std::vector<ShadowEntry> All() const;
  void Clear();
  [[nodiscard]] size_t size() const { return count_; }
  [[nodiscard]] bool empty() const { return count_ == 0; }

 private:
  static constexpr uint32_t kNil = 0xffffffff;
  static constexpr int kUnlinkLimit = 8;  // entries EraseRange unlinks one by one
  struct Node {
    uint64_t iova = 0;
    uint64_t size = 0;
    uint32_t owner = 0;
    uint32_t priority = 0;  // max-heap order
    uint32_t left = kNil;
    uint32_t right = kNil;
  };
  static_assert(sizeof(Node) == 32);

  /// Splits `node`'s tree into (iova < key) and (iova >= key).
  void Split(uint32_t node, uint64_t key, uint32_t* less, uint32_t* rest);
  [[nodiscard]] uint32_t Merge(uint32_t a, uint32_t b);
  /// Returns the nodes of the tree at `node` to the free list.
  void Release(uint32_t node);
  /// The link (root_ or a child field) holding the entry with the smallest
  /// IOVA >= `iova`, or null when there is none.
  [[nodiscard]] uint32_t* LinkToFirstAtOrAbove(uint64_t iova);
  void Collect(uint32_t node, uint64_t first, uint64_t last, uint32_t owner,
               std::vector<ShadowEntry>& out) const;
  [[nodiscard]] uint32_t NewNode(uint64_t iova, uint64_t size, uint32_t owner);
  uint32_t NextPriority();

  std::deque<Node> nodes_;      // the pool; a deque grows without slack or moves
  std::vector<uint32_t> free_;  // indexes of unused nodes
  uint32_t root_ = kNil;
  size_t count_ = 0;
  uint64_t rng_state_ = 0x2545f4914f6cdd1dULL;  // xorshift64 state, fixed seed
};

}  // namespace vfiod::dma
