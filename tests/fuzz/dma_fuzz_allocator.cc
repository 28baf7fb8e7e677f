// IovaAllocator against a reference that keeps the allocated bytes as a
// std::map of coalesced intervals and finds places by scanning the holes.
#include <algorithm>
#include <bit>
#include <cerrno>
#include <iterator>
#include <map>
#include <optional>
#include <vector>

#include "dma/iova_allocator.h"
#include "dma_fuzz.h"
#include "fuzz_check.h"

namespace vfiod::fuzz {
namespace {

using kernel::IovaRange;

struct RefAllocator {
  std::vector<IovaRange> ranges;      // usable, sorted, trimmed to the granule
  std::map<uint64_t, uint64_t> used;  // allocated bytes, first -> last, coalesced
  uint64_t granule = 0;
  size_t allocations = 0;

  [[nodiscard]] bool Inside(uint64_t first, uint64_t last) const {
    return std::ranges::any_of(
        ranges, [&](const IovaRange& r) { return r.start <= first && last <= r.last; });
  }
  [[nodiscard]] bool AnyUsed(uint64_t first, uint64_t last) const {
    auto it = used.upper_bound(last);
    return it != used.begin() && std::prev(it)->second >= first;
  }
  [[nodiscard]] bool AllUsed(uint64_t first, uint64_t last) const {
    auto it = used.upper_bound(first);
    return it != used.begin() && std::prev(it)->second >= last;
  }
  void Take(uint64_t first, uint64_t last) {
    if (first > 0) {
      auto it = used.upper_bound(first - 1);
      if (it != used.begin() && std::prev(it)->second == first - 1) {
        first = std::prev(it)->first;
        used.erase(std::prev(it));
      }
    }
    if (last < kMax) {
      if (auto right = used.find(last + 1); right != used.end()) {
        last = right->second;
        used.erase(right);
      }
    }
    used[first] = last;
  }
  void Give(uint64_t first, uint64_t last) {
    auto it = std::prev(used.upper_bound(first));
    const uint64_t run_first = it->first;
    const uint64_t run_last = it->second;
    used.erase(it);
    if (run_first < first) {
      used[run_first] = first - 1;
    }
    if (last < run_last) {
      used[last + 1] = run_last;
    }
  }
  // The lowest granule-aligned place of `size` bytes, free, inside a range, ending at or below
  // `max`.
  [[nodiscard]] std::optional<uint64_t> LowestFit(uint64_t size, uint64_t max) const {
    for (const IovaRange& r : ranges) {
      uint64_t at = r.start;
      while (at <= r.last && r.last - at >= size - 1 && at <= max && max - at >= size - 1) {
        const uint64_t last = at + (size - 1);
        auto it = used.upper_bound(last);
        if (it == used.begin() || std::prev(it)->second < at) {
          return at;
        }
        if (std::prev(it)->second == kMax) {
          break;
        }
        at = std::prev(it)->second + 1;  // past the allocation in the way
      }
    }
    return std::nullopt;
  }
  [[nodiscard]] uint64_t FreeBytes() const {
    unsigned __int128 total = 0;
    for (const IovaRange& r : ranges) {
      total += static_cast<unsigned __int128>(r.last - r.start) + 1;
    }
    for (const auto& [first, last] : used) {
      total -= static_cast<unsigned __int128>(last - first) + 1;
    }
    return total > kMax ? kMax : static_cast<uint64_t>(total);
  }
};

// The usable ranges: the union of `asked`, each maximal run trimmed inward to
// the granule. nullopt when Create must refuse them.
std::optional<std::vector<IovaRange>> RefRanges(std::vector<IovaRange> asked, uint64_t granule) {
  if (asked.empty()) {
    asked.push_back({0, kMax});
  }
  std::ranges::sort(asked, {}, &IovaRange::start);
  std::vector<IovaRange> runs;
  for (const IovaRange& r : asked) {
    if (r.last < r.start || (!runs.empty() && r.start <= runs.back().last)) {
      return std::nullopt;
    }
    if (!runs.empty() && runs.back().last + 1 == r.start) {
      runs.back().last = r.last;
    } else {
      runs.push_back(r);
    }
  }
  std::vector<IovaRange> usable;
  for (const IovaRange& r : runs) {
    const unsigned __int128 first =
        (static_cast<unsigned __int128>(r.start) + granule - 1) / granule * granule;
    const unsigned __int128 end = (static_cast<unsigned __int128>(r.last) + 1) / granule * granule;
    if (first < end) {
      usable.push_back({static_cast<uint64_t>(first), static_cast<uint64_t>(end - 1)});
    }
  }
  return usable;
}

uint64_t PageSizes(FuzzedDataProvider& in) {
  constexpr uint64_t kChoices[] = {0x1000 | 0x200000 | 0x40000000, 0x1000, 0x10000 | 0x200000,
                                   0x200000, 0x1000 | 0x40000000};
  return in.ConsumeIntegralInRange<int>(0, 15) == 0 ? in.ConsumeIntegral<uint64_t>()
                                                    : in.PickValueInArray(kChoices);
}

void CheckAllocate(FuzzedDataProvider& in, dma::IovaAllocator& alloc, RefAllocator& ref) {
  const uint64_t g = ref.granule;
  dma::IovaRequest req;
  req.size = Value(in, g);
  if (in.ConsumeBool()) {
    req.max_iova = Value(in, g) | (g - 1);
  }
  const bool fixed = in.ConsumeBool();
  if (fixed) {
    req.fixed_iova = Value(in, g);
  } else if (in.ConsumeBool()) {
    req.congruence_modulus = in.ConsumeIntegralInRange<int>(0, 7) == 0
                                 ? in.ConsumeIntegral<uint64_t>()
                                 : uint64_t{1} << in.ConsumeIntegralInRange<int>(0, 31);
    req.congruence_residue = Value(in, g);
  }
  Result<uint64_t> got = alloc.Allocate(req);
  if (req.size == 0 || req.size % g != 0) {
    FUZZ_CHECK(!got && got.error().code == EINVAL);
    return;
  }
  if (fixed) {
    const uint64_t at = *req.fixed_iova;
    const uint64_t last = at + (req.size - 1);
    if (at % g != 0 || last < at || last > req.max_iova || !ref.Inside(at, last)) {
      FUZZ_CHECK(!got && got.error().code == EINVAL);
    } else if (ref.AnyUsed(at, last)) {
      FUZZ_CHECK(!got && got.error().code == EEXIST);
    } else {
      FUZZ_CHECK(got && *got == at);
    }
  } else {
    const uint64_t modulus = std::max(req.congruence_modulus, g);
    const bool bad_modulus =
        req.congruence_modulus != 0 && !std::has_single_bit(req.congruence_modulus);
    if (bad_modulus || (req.congruence_residue & (modulus - 1)) % g != 0) {
      FUZZ_CHECK(!got && got.error().code == EINVAL);
      return;
    }
    const std::optional<uint64_t> lowest = ref.LowestFit(req.size, req.max_iova);
    if (!lowest) {
      FUZZ_CHECK(!got && got.error().code == ENOSPC);
      return;
    }
    FUZZ_CHECK(got.has_value());
    // Without a congruence preference the placement is lowest first fit; with
    // one, any free aligned place in the ranges and under the limit.
    if (modulus == g) {
      FUZZ_CHECK(*got == *lowest);
    }
    const uint64_t last = *got + (req.size - 1);
    FUZZ_CHECK(*got % g == 0 && last >= *got && last <= req.max_iova);
    FUZZ_CHECK(ref.Inside(*got, last) && !ref.AnyUsed(*got, last));
  }
  if (got) {
    ref.Take(*got, *got + (req.size - 1));
    ++ref.allocations;
  }
}

void CheckFree(FuzzedDataProvider& in, dma::IovaAllocator& alloc, RefAllocator& ref) {
  const uint64_t g = ref.granule;
  uint64_t iova = Value(in, g);
  uint64_t size = Value(in, g);
  if (!ref.used.empty() && in.ConsumeBool()) {  // aim at an allocated run
    auto it = ref.used.begin();
    std::advance(it, in.ConsumeIntegralInRange<size_t>(0, ref.used.size() - 1));
    iova = it->first;
    size = it->second - it->first + 1;
  }
  Result<void> got = alloc.Free(iova, size);
  const uint64_t last = iova + (size - 1);
  if (size == 0 || (iova | size) % g != 0 || last < iova || !ref.Inside(iova, last)) {
    FUZZ_CHECK(!got && got.error().code == EINVAL);
  } else if (!ref.AllUsed(iova, last)) {
    FUZZ_CHECK(!got && got.error().code == ENOENT);
  } else {
    FUZZ_CHECK(got.has_value());
    ref.Give(iova, last);
    --ref.allocations;
  }
}

}  // namespace

void FuzzIovaAllocator(FuzzedDataProvider& in) {
  const uint64_t pgsizes = PageSizes(in);
  std::vector<IovaRange> asked(in.ConsumeIntegralInRange<size_t>(0, 4));
  for (IovaRange& r : asked) {
    r.start = Value(in, 0x1000);
    r.last = in.ConsumeBool() ? r.start + Value(in, 0x1000) : Value(in, 0x1000);
  }
  Result<dma::IovaAllocator> alloc = dma::IovaAllocator::Create(asked, pgsizes);
  const uint64_t granule = pgsizes & (0 - pgsizes);
  const std::optional<std::vector<IovaRange>> usable =
      pgsizes == 0 ? std::nullopt : RefRanges(asked, granule);
  FUZZ_CHECK(alloc.has_value() == usable.has_value());
  if (!alloc) {
    FUZZ_CHECK(alloc.error().code == EINVAL);
    return;
  }
  FUZZ_CHECK(alloc->ranges() == *usable && alloc->granule() == granule);
  RefAllocator ref{*usable, {}, granule, 0};
  while (in.remaining_bytes() > 0) {
    if (in.ConsumeBool()) {
      CheckAllocate(in, *alloc, ref);
    } else {
      CheckFree(in, *alloc, ref);
    }
    FUZZ_CHECK(alloc->allocation_count() == ref.allocations);
    FUZZ_CHECK(alloc->free_bytes() == ref.FreeBytes());
  }
}

}  // namespace vfiod::fuzz
