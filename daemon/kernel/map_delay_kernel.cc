#include "kernel/map_delay_kernel.h"

#include <linux/vfio.h>

#include <algorithm>
#include <thread>

namespace vfiod::kernel {

MapDelayKernel::MapDelayKernel(std::unique_ptr<Kernel> target, std::chrono::microseconds per_mib)
    : ForwardingKernel(*target),
      owned_(std::move(target)),
      per_mib_(std::clamp(per_mib, std::chrono::microseconds(0), kMaxPerMib)) {}

std::chrono::nanoseconds MapDelayKernel::DelayFor(uint64_t size) const {
  // KiB * (us per MiB) / 1024 = us. With the size clamped to 2^40 KiB and
  // per_mib_ to 10^6, the product stays below 2^60 and the ns below 2^63.
  const uint64_t kib = std::min<uint64_t>(size >> 10, uint64_t{1} << 40);
  const uint64_t us = kib * static_cast<uint64_t>(per_mib_.count()) / 1024;
  return std::chrono::microseconds(static_cast<int64_t>(us));
}

Result<int> MapDelayKernel::ioctl(int fd, unsigned long request, void* arg) {
  if (request == VFIO_IOMMU_MAP_DMA && arg != nullptr && per_mib_.count() > 0) {
    const auto* map = static_cast<const vfio_iommu_type1_dma_map*>(arg);
    std::this_thread::sleep_for(DelayFor(map->size));
  }
  return ForwardingKernel::ioctl(fd, request, arg);
}

}  // namespace vfiod::kernel
