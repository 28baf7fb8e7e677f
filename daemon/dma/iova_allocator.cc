#include "dma/iova_allocator.h"

#include <fmt/format.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <string>
#include <utility>

namespace vfiod::dma {
namespace {

constexpr uint64_t kMax = std::numeric_limits<uint64_t>::max();
constexpr const char* kOp = "iova allocate";

// Congruence-preferring searches probe at most this many candidate intervals
// before falling back to a smaller page size: the congruence is a preference,
// and an exhaustive search would make a fragmented space O(n) per call.
constexpr int kMaxCongruenceProbes = 64;

// Smallest a >= x with a % modulus == residue, if it does not overflow.
std::optional<uint64_t> CongruentAtOrAbove(uint64_t x, uint64_t modulus, uint64_t residue) {
  uint64_t base = x & ~(modulus - 1);
  if (base > kMax - residue) {
    return std::nullopt;
  }
  uint64_t candidate = base + residue;
  if (candidate >= x) {
    return candidate;
  }
  if (candidate > kMax - modulus) {
    return std::nullopt;
  }
  return candidate + modulus;
}

// Trims a closed range inward to `granule`; nullopt if nothing is left.
std::optional<kernel::IovaRange> TrimToGranule(kernel::IovaRange r, uint64_t granule) {
  if (r.start > kMax - (granule - 1)) {
    return std::nullopt;
  }
  uint64_t first = (r.start + granule - 1) & ~(granule - 1);
  uint64_t last = r.last;
  if (last != kMax) {
    uint64_t end = (last + 1) & ~(granule - 1);  // exclusive end, aligned down
    if (end == 0) {
      return std::nullopt;
    }
    last = end - 1;
  }
  if (first > last) {
    return std::nullopt;
  }
  return kernel::IovaRange{first, last};
}

}  // namespace

IovaAllocator::IovaAllocator(std::vector<kernel::IovaRange> ranges, uint64_t pgsizes)
    : ranges_(std::move(ranges)), pgsizes_(pgsizes), granule_(pgsizes & -pgsizes) {
  for (const kernel::IovaRange& r : ranges_) {
    free_.Insert(Interval{r.start, r.last});
  }
}

Result<IovaAllocator> IovaAllocator::Create(std::span<const kernel::IovaRange> ranges,
                                            uint64_t iova_pgsizes) {
  if (iova_pgsizes == 0) {
    return Fail(EINVAL, "iova allocator", "empty IOMMU page-size bitmap");
  }
  std::vector<kernel::IovaRange> sorted(ranges.begin(), ranges.end());
  if (sorted.empty()) {
    sorted.push_back({0, kMax});
  }
  std::ranges::sort(sorted, {}, &kernel::IovaRange::start);
  std::vector<kernel::IovaRange> merged;
  for (const kernel::IovaRange& r : sorted) {
    if (r.last < r.start) {
      return Fail(EINVAL, "iova allocator",
                  fmt::format("range {:#x}-{:#x} ends before it starts", r.start, r.last));
    }
    if (!merged.empty() && r.start <= merged.back().last) {
      return Fail(EINVAL, "iova allocator", fmt::format("ranges overlap at {:#x}", r.start));
    }
    if (!merged.empty() && merged.back().last + 1 == r.start) {
      merged.back().last = r.last;  // touching ranges are one range
    } else {
      merged.push_back(r);
    }
  }
  uint64_t granule = iova_pgsizes & -iova_pgsizes;
  std::vector<kernel::IovaRange> usable;
  for (const kernel::IovaRange& r : merged) {
    if (auto trimmed = TrimToGranule(r, granule)) {
      usable.push_back(*trimmed);
    }
  }
  return IovaAllocator(std::move(usable), iova_pgsizes);
}

Result<uint64_t> IovaAllocator::Allocate(const IovaRequest& request) {
  if (request.size == 0 || request.size % granule_ != 0) {
    return Fail(
        EINVAL, kOp,
        fmt::format("size {:#x} is not a non-zero multiple of {:#x}", request.size, granule_));
  }
  if (request.fixed_iova) {
    return AllocateFixed(request, *request.fixed_iova);
  }
  uint64_t modulus = request.congruence_modulus;
  if (modulus != 0 && !std::has_single_bit(modulus)) {
    return Fail(EINVAL, kOp,
                fmt::format("congruence modulus {:#x} is not a power of two", modulus));
  }
  modulus = std::max(modulus, granule_);
  uint64_t residue = request.congruence_residue & (modulus - 1);
  if (residue % granule_ != 0) {
    return Fail(EINVAL, kOp,
                fmt::format("congruence residue {:#x} is not aligned to {:#x}", residue, granule_));
  }
  // Try the requested modulus, then every smaller supported page size.
  for (uint64_t m = modulus; m >= granule_; m >>= 1) {
    if (m != modulus && m != granule_ && (pgsizes_ & m) == 0) {
      continue;
    }
    if (auto place = FindPlace(request.size, request.max_iova, m, residue & (m - 1))) {
      VFIOD_TRY(Take(*place, request.size));
      return *place;
    }
  }
  return Fail(ENOSPC, kOp,
              fmt::format("no free IOVA space of {:#x} bytes at or below {:#x} ({:#x} bytes free, "
                          "{} allocations)",
                          request.size, request.max_iova, free_bytes(), allocations_));
}

Result<uint64_t> IovaAllocator::AllocateFixed(const IovaRequest& request, uint64_t iova) {
  uint64_t last = iova + (request.size - 1);
  if (iova % granule_ != 0) {
    return Fail(EINVAL, kOp, fmt::format("IOVA {:#x} is not aligned to {:#x}", iova, granule_));
  }
  if (last < iova) {
    return Fail(EINVAL, kOp, fmt::format("IOVA {:#x} + {:#x} wraps", iova, request.size));
  }
  if (last > request.max_iova) {
    return Fail(
        EINVAL, kOp,
        fmt::format("IOVA {:#x}-{:#x} exceeds the DMA limit {:#x}", iova, last, request.max_iova));
  }
  if (!InsideRanges(iova, last)) {
    return Fail(EINVAL, kOp,
                fmt::format("IOVA {:#x}-{:#x} is outside the IOMMU's IOVA ranges", iova, last));
  }
  std::optional<Interval> hole = free_.Containing(iova);
  if (!hole || hole->last < last) {
    // Inside one range but not wholly free: an allocation overlaps.
    const uint64_t taken = hole ? hole->last + 1 : iova;
    return Fail(EEXIST, kOp,
                fmt::format("IOVA {:#x}-{:#x} overlaps an allocation (allocated at {:#x})", iova,
                            last, taken));
  }
  VFIOD_TRY(Take(iova, request.size));
  return iova;
}

std::optional<uint64_t> IovaAllocator::FindPlace(uint64_t size, uint64_t max_iova, uint64_t modulus,
                                                 uint64_t residue) const {
  if (size - 1 > max_iova) {
    return std::nullopt;
  }
  auto fits = [&](const Interval& hole) -> std::optional<uint64_t> {
    auto at = CongruentAtOrAbove(hole.first, modulus, residue);
    if (!at) {
      return std::nullopt;
    }
    uint64_t limit = std::min(hole.last, max_iova);
    if (*at > limit || limit - *at < size - 1) {
      return std::nullopt;
    }
    return at;
  };
  // Fast path: the lowest hole long enough whatever its alignment.
  uint64_t slack = modulus - granule_;
  if (size - 1 <= kMax - slack) {
    if (auto hole = free_.FirstWithSpan(0, size - 1 + slack)) {
      if (auto at = fits(*hole)) {
        return at;
      }
    }
  }
  // Slow path: lower holes that fit only thanks to their alignment. With no
  // congruence (modulus == granule) the first long-enough hole decides.
  uint64_t from = 0;
  for (int probe = 0; modulus == granule_ || probe < kMaxCongruenceProbes; ++probe) {
    auto hole = free_.FirstWithSpan(from, size - 1);
    if (!hole || hole->first > max_iova - (size - 1)) {
      return std::nullopt;
    }
    if (auto at = fits(*hole)) {
      return at;
    }
    if (modulus == granule_ || hole->first == kMax) {
      return std::nullopt;
    }
    from = hole->first + 1;
  }
  return std::nullopt;
}

Result<void> IovaAllocator::Take(uint64_t iova, uint64_t size) {
  const uint64_t last = iova + (size - 1);
  const std::optional<Interval> found = free_.Containing(iova);
  if (!found || found->last < last) {
    return Fail(EEXIST, kOp, fmt::format("IOVA {:#x}-{:#x} is not free", iova, last));
  }
  const Interval hole = *found;
  free_.Erase(hole.first);
  if (hole.first < iova) {
    free_.Insert(Interval{hole.first, iova - 1});
  }
  if (last < hole.last) {
    free_.Insert(Interval{last + 1, hole.last});
  }
  ++allocations_;
  return Ok();
}

Result<void> IovaAllocator::Free(uint64_t iova, uint64_t size) {
  if (size == 0 || ((iova | size) & (granule_ - 1)) != 0 || iova + (size - 1) < iova ||
      !InsideRanges(iova, iova + (size - 1))) {
    return Fail(EINVAL, "iova free",
                fmt::format("{:#x} (+{:#x}) is empty, misaligned, wraps or lies outside the "
                            "IOVA ranges",
                            iova, size));
  }
  Interval hole{iova, iova + (size - 1)};
  // Wholly allocated: no free interval starts inside it or reaches into it.
  const std::optional<Interval> below = free_.Floor(hole.last);
  if (below && below->last >= hole.first) {
    return Fail(ENOENT, "iova free",
                fmt::format("{:#x}-{:#x} is not allocated: {:#x}-{:#x} of it is free", hole.first,
                            hole.last, std::max(below->first, hole.first),
                            std::min(below->last, hole.last)));
  }
  --allocations_;
  // Coalesce with free neighbours; ranges never touch, so neighbours are in
  // the same IOVA range.
  if (hole.first > 0) {
    if (auto left = free_.Containing(hole.first - 1)) {
      free_.Erase(left->first);
      hole.first = left->first;
    }
  }
  if (hole.last < kMax) {
    if (auto right = free_.Ceil(hole.last + 1); right && right->first == hole.last + 1) {
      free_.Erase(right->first);
      hole.last = right->last;
    }
  }
  free_.Insert(hole);
  return Ok();
}

bool IovaAllocator::InsideRanges(uint64_t first, uint64_t last) const {
  auto it = std::ranges::upper_bound(ranges_, first, {}, &kernel::IovaRange::start);
  if (it == ranges_.begin()) {
    return false;
  }
  --it;
  return it->start <= first && last <= it->last;
}

}  // namespace vfiod::dma
