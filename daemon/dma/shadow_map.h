// The engine's shadow of what the kernel holds: one entry per MAP_DMA entry,
// ordered by IOVA, each naming the mapping that owns it. Kept compact because
// a container may hold 65535 entries: a Treap (dma/treap.h) of 32 bytes per
// entry, with no allocation per entry.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "dma/treap.h"

namespace vfiod::dma {

/// One kernel entry: [iova, iova + size), owned by mapping slot `owner`.
struct ShadowEntry {
  uint64_t iova = 0;
  uint64_t size = 0;
  uint32_t owner = 0;  ///< the owning mapping's slot number (never 0)
  bool operator==(const ShadowEntry&) const = default;
};

/// The entries keyed by IOVA. The caller keeps them disjoint (the kernel
/// refuses overlaps before an entry is added).
/// Not thread-safe: the owning DmaSpace's mutex serialises calls.
class ShadowMap {
 public:
  /// Adds an entry; none may start at the same IOVA (checked by assert only).
  void Insert(uint64_t iova, uint64_t size, uint32_t owner) {
    tree_.Insert({.iova = iova, .size = size, .owner = owner});
  }
  /// Removes the entries starting in [iova, iova + size - 1] (size > 0);
  /// returns how many. O(k log n) for a few, O(k + log n) for many.
  size_t EraseRange(uint64_t iova, uint64_t size);
  /// The entries starting in [first, last], in IOVA order; only those of
  /// `owner` unless it is 0. O(k + log n) for k visited.
  [[nodiscard]] std::vector<ShadowEntry> In(uint64_t first, uint64_t last,
                                            uint32_t owner = 0) const;
  /// Every entry, in IOVA order.
  [[nodiscard]] std::vector<ShadowEntry> All() const;
  void Clear() { tree_.Clear(); }
  [[nodiscard]] size_t size() const { return tree_.size(); }
  [[nodiscard]] bool empty() const { return tree_.empty(); }

 private:
  struct Traits {
    using Item = ShadowEntry;
    using Summary = NoSummary;
    static uint64_t Key(const ShadowEntry& entry) { return entry.iova; }
  };
  static_assert(Treap<Traits>::kNodeBytes == 32);

  Treap<Traits> tree_;
};

}  // namespace vfiod::dma
