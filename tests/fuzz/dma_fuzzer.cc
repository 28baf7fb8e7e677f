// libFuzzer target: the DMA layer's pure bookkeeping (free-interval tree, IOVA
// allocator, shadow map, map and unmap planners) against reference models.
// The first input byte picks the subject; the rest are its operations.
#include <cstddef>
#include <cstdint>

#include "dma_fuzz.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace vfiod::fuzz;  // NOLINT(google-build-using-namespace): fuzz entry point
  FuzzedDataProvider in(data, size);
  switch (in.ConsumeIntegralInRange<int>(0, 4)) {
    case 0:
      FuzzFreeIntervalTree(in);
      break;
    case 1:
      FuzzShadowMap(in);
      break;
    case 2:
      FuzzIovaAllocator(in);
      break;
    case 3:
      FuzzPlanMaps(in);
      break;
    default:
      FuzzPlanUnmaps(in);
      break;
  }
  return 0;
}
