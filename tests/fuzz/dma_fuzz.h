// The DMA bookkeeping fuzz target (dma_fuzzer.cc): each subject is driven by
// operations decoded from the input and every answer is compared with a plain
// reference model written here (std::map of intervals, page-by-page scans).
#pragma once

#include <fuzzer/FuzzedDataProvider.h>

#include <cstdint>
#include <limits>

namespace vfiod::fuzz {

inline constexpr uint64_t kMax = std::numeric_limits<uint64_t>::max();

/// A fuzz-friendly address or size: mostly small multiples of `unit` (so
/// operations collide), sometimes near the top of the 64-bit space (wrap
/// checks), misaligned, or anything.
inline uint64_t Value(FuzzedDataProvider& in, uint64_t unit) {
  const uint64_t k = in.ConsumeIntegralInRange<uint64_t>(0, 63);
  switch (in.ConsumeIntegralInRange<int>(0, 7)) {
    case 0:
      return in.ConsumeIntegral<uint64_t>();
    case 1:
      return 0 - (k + 1) * unit;  // the top pages of the space
    case 2:
      return unit > 1 ? k * unit + in.ConsumeIntegralInRange<uint64_t>(1, unit - 1) : k;
    default:
      return k * unit;
  }
}

/// Each subject runs the rest of the input as a sequence of operations.
void FuzzFreeIntervalTree(FuzzedDataProvider& in);
void FuzzShadowMap(FuzzedDataProvider& in);
void FuzzIovaAllocator(FuzzedDataProvider& in);
void FuzzPlanMaps(FuzzedDataProvider& in);
void FuzzPlanUnmaps(FuzzedDataProvider& in);

}  // namespace vfiod::fuzz
