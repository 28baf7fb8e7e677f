// The two treaps of the DMA layer against std::map: FreeIntervalTree (the
// allocator's free space) and ShadowMap (the kernel entries of a container).
#include <iterator>
#include <map>
#include <optional>
#include <vector>

#include "dma/free_interval_tree.h"
#include "dma/shadow_map.h"
#include "dma_fuzz.h"
#include "fuzz_check.h"

namespace vfiod::fuzz {
namespace {

using dma::Interval;
using Intervals = std::map<uint64_t, uint64_t>;  // first -> last

// Whether [first, last] overlaps a stored interval.
bool Overlaps(const Intervals& ref, uint64_t first, uint64_t last) {
  auto it = ref.upper_bound(last);
  return it != ref.begin() && std::prev(it)->second >= first;
}

std::optional<Interval> AsInterval(Intervals::const_iterator it, const Intervals& ref) {
  if (it == ref.end()) {
    return std::nullopt;
  }
  return Interval{it->first, it->second};
}

std::optional<Interval> RefFloor(const Intervals& ref, uint64_t x) {
  auto it = ref.upper_bound(x);
  return it == ref.begin() ? std::nullopt : AsInterval(std::prev(it), ref);
}

uint64_t RefTotal(const Intervals& ref) {
  unsigned __int128 total = 0;
  for (const auto& [first, last] : ref) {
    total += static_cast<unsigned __int128>(last - first) + 1;
  }
  return total > kMax ? kMax : static_cast<uint64_t>(total);
}

void TreeStep(FuzzedDataProvider& in, dma::FreeIntervalTree& tree, Intervals& ref) {
  const uint64_t x = Value(in, 16);
  switch (in.ConsumeIntegralInRange<int>(0, 5)) {
    case 0: {
      const uint64_t span = Value(in, 16);
      const uint64_t last = x > kMax - span ? kMax : x + span;
      if (!Overlaps(ref, x, last)) {  // the caller keeps intervals disjoint
        tree.Insert(Interval{x, last});
        ref[x] = last;
      }
      break;
    }
    case 1:
      FUZZ_CHECK(tree.Erase(x) == (ref.erase(x) == 1));
      break;
    case 2:
      FUZZ_CHECK(tree.Floor(x) == RefFloor(ref, x));
      break;
    case 3:
      FUZZ_CHECK(tree.Ceil(x) == AsInterval(ref.lower_bound(x), ref));
      break;
    case 4: {
      std::optional<Interval> floor = RefFloor(ref, x);
      FUZZ_CHECK(tree.Containing(x) == (floor && floor->last >= x ? floor : std::nullopt));
      break;
    }
    default: {
      const uint64_t min_span = Value(in, 16);
      auto it = ref.lower_bound(x);
      while (it != ref.end() && it->second - it->first < min_span) {
        ++it;
      }
      FUZZ_CHECK(tree.FirstWithSpan(x, min_span) == AsInterval(it, ref));
      break;
    }
  }
  FUZZ_CHECK(tree.size() == ref.size());
  FUZZ_CHECK(tree.TotalBytes() == RefTotal(ref));
}

struct RefEntry {
  uint64_t size;
  uint32_t owner;
};
using Entries = std::map<uint64_t, RefEntry>;  // iova -> entry

std::vector<dma::ShadowEntry> RefIn(const Entries& ref, uint64_t first, uint64_t last,
                                    uint32_t owner) {
  std::vector<dma::ShadowEntry> out;
  for (auto it = ref.lower_bound(first); it != ref.end() && it->first <= last; ++it) {
    if (owner == 0 || it->second.owner == owner) {
      out.push_back({it->first, it->second.size, it->second.owner});
    }
  }
  return out;
}

void ShadowStep(FuzzedDataProvider& in, dma::ShadowMap& map, Entries& ref) {
  const uint64_t iova = Value(in, 4096);
  const uint64_t size = std::max<uint64_t>(Value(in, 4096), 1);
  uint64_t last = iova > kMax - (size - 1) ? kMax : iova + (size - 1);
  if (last - iova == kMax) {
    last = kMax - 1;  // a size of 2^64 does not fit the size fields
  }
  switch (in.ConsumeIntegralInRange<int>(0, 4)) {
    case 0: {
      const auto owner = in.ConsumeIntegralInRange<uint32_t>(1, 4);
      Intervals spans;
      for (const auto& [at, entry] : ref) {
        spans[at] = at + (entry.size - 1);
      }
      if (!Overlaps(spans, iova, last)) {  // the kernel refuses overlaps first
        map.Insert(iova, last - iova + 1, owner);
        ref[iova] = {last - iova + 1, owner};
      }
      break;
    }
    case 1: {
      const size_t erased = map.EraseRange(iova, last - iova + 1);
      size_t expected = 0;
      for (auto it = ref.lower_bound(iova); it != ref.end() && it->first <= last;) {
        it = ref.erase(it);
        ++expected;
      }
      FUZZ_CHECK(erased == expected);
      break;
    }
    case 2: {
      const auto owner = in.ConsumeIntegralInRange<uint32_t>(0, 4);
      FUZZ_CHECK(map.In(iova, last, owner) == RefIn(ref, iova, last, owner));
      break;
    }
    case 3:
      FUZZ_CHECK(map.All() == RefIn(ref, 0, kMax, 0));
      break;
    default:
      if (in.ConsumeIntegralInRange<int>(0, 7) == 0) {
        map.Clear();
        ref.clear();
      }
      break;
  }
  FUZZ_CHECK(map.size() == ref.size() && map.empty() == ref.empty());
}

}  // namespace

void FuzzFreeIntervalTree(FuzzedDataProvider& in) {
  dma::FreeIntervalTree tree;
  Intervals ref;
  while (in.remaining_bytes() > 0) {
    TreeStep(in, tree, ref);
  }
}

void FuzzShadowMap(FuzzedDataProvider& in) {
  dma::ShadowMap map;
  Entries ref;
  while (in.remaining_bytes() > 0) {
    ShadowStep(in, map, ref);
  }
}

}  // namespace vfiod::fuzz
