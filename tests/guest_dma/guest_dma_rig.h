// The engine's guest rig: edu in a container with a DmaSpace on the real
// kernel, ground truth read straight from /proc (independent of the planner's
// reader), and leak counters (VmLck, fds, DMA_AVAIL).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "dma/backing.h"
#include "dma/engine.h"
#include "rig.h"

namespace vfiod::testing {

/// The PFN of the page holding `vaddr` (0 when not present), from pagemap.
[[nodiscard]] uint64_t PfnOf(uint64_t vaddr);

/// Physically contiguous runs of [vaddr, vaddr + len), counted from pagemap.
[[nodiscard]] uint64_t CountRuns(uint64_t vaddr, uint64_t len);

/// VmLck of this process, bytes.
[[nodiscard]] uint64_t VmLckBytes();

/// What must be back where it was when a test ends.
struct GuestLeaks {
  uint64_t vmlck = 0;
  int fds = 0;
  std::optional<uint32_t> dma_avail;
  bool operator==(const GuestLeaks&) const = default;
};

class GuestDmaTest : public GuestTest {
 protected:
  void SetUp() override;
  void TearDown() override;

  /// Replaces space_ with one using `config`.
  void NewSpace(dma::EngineConfig config);
  [[nodiscard]] GuestLeaks Leaks() const;
  /// Maps `backing` below edu's 28-bit limit and proves it with two edu
  /// transfers: one from the first bytes, one into the last page.
  void MapAndProve(std::shared_ptr<const dma::Backing> backing, uint64_t size = 0);
  /// Checks that iova - vaddr is a multiple of `page` wherever the backing's
  /// physical pages are `page`-aligned blocks (so the IOMMU can use them whole).
  void ExpectSuperpageCongruent(const dma::MappingReport& report, uint64_t page);

  GuestLeaks start_;
  std::unique_ptr<dma::DmaSpace> space_;
};

}  // namespace vfiod::testing
