// A slow VFIO_IOMMU_MAP_DMA for the model: a forwarding wrapper over the seam
// that sleeps before each MAP_DMA for a time proportional to its size, as
// pinning the pages makes it take on Linux. It sleeps before forwarding, so
// outside the model's own mutex: maps on other containers (and every other
// call) go on meanwhile, as on the real kernel. For tests and benchmarks of
// the daemon under long maps (config: model.map_dma_us_per_mib); never
// wrapped around the real kernel.
#pragma once

#include <chrono>
#include <memory>

#include "kernel/fault_kernel.h"

namespace vfiod::kernel {

class MapDelayKernel final : public ForwardingKernel {
 public:
  /// The most `per_mib` accepted (1 s per MiB): keeps the sleep's
  /// arithmetic far from overflow for any size.
  static constexpr std::chrono::microseconds kMaxPerMib{1'000'000};

  /// Owns `target`. A MAP_DMA of `size` bytes sleeps size / 1 MiB * `per_mib`
  /// (clamped to kMaxPerMib) before it is forwarded.
  MapDelayKernel(std::unique_ptr<Kernel> target, std::chrono::microseconds per_mib);

  Result<int> ioctl(int fd, unsigned long request, void* arg) override;

  /// The sleep a MAP_DMA of `size` bytes gets.
  [[nodiscard]] std::chrono::nanoseconds DelayFor(uint64_t size) const;

 private:
  std::unique_ptr<Kernel> owned_;  // the target; ForwardingKernel holds a reference to it
  std::chrono::microseconds per_mib_;
};

}  // namespace vfiod::kernel
