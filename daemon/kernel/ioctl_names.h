// Names of the VFIO ioctl requests, for error messages, call counters and
// fault-injection filters. Code above the kernel layer cannot see
// <linux/vfio.h>, so it names requests by string ("VFIO_IOMMU_MAP_DMA").
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace vfiod::kernel {

/// The request's macro name, or "ioctl 0x<hex>" for one vfiod does not know.
[[nodiscard]] std::string IoctlName(unsigned long request);

/// The request number for a VFIO ioctl macro name; nullopt if unknown.
[[nodiscard]] std::optional<unsigned long> IoctlRequestByName(std::string_view name);

}  // namespace vfiod::kernel
