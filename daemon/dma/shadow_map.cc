#include "dma/shadow_map.h"

#include <cassert>
#include <limits>

namespace vfiod::dma {

size_t ShadowMap::EraseRange(uint64_t iova, uint64_t size) {
  assert(size > 0);
  constexpr uint64_t kTop = std::numeric_limits<uint64_t>::max();
  const uint64_t last = size - 1 > kTop - iova ? kTop : iova + (size - 1);
  return tree_.EraseRange(iova, last);
}

std::vector<ShadowEntry> ShadowMap::In(uint64_t first, uint64_t last, uint32_t owner) const {
  std::vector<ShadowEntry> out;
  tree_.ForEachIn(first, last, [&](const ShadowEntry& entry) {
    if (owner == 0 || entry.owner == owner) {
      out.push_back(entry);
    }
  });
  return out;
}

std::vector<ShadowEntry> ShadowMap::All() const {
  std::vector<ShadowEntry> out;
  out.reserve(tree_.size());
  tree_.ForEachIn(0, std::numeric_limits<uint64_t>::max(),
                  [&](const ShadowEntry& entry) { out.push_back(entry); });
  return out;
}

}  // namespace vfiod::dma
