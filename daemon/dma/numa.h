// NUMA placement of DMA memory: bind a range to the node the device sits on
// (or a node the caller names) with mbind(2), called through syscall(2) so no
// libnuma is needed. Must run before the memory is faulted in.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "proto/result.h"

namespace vfiod::dma {

/// Where memory should live. node -1 means "no preference" (a no-op).
struct NumaPolicy {
  int node = -1;
  /// true: MPOL_BIND (allocation fails rather than going elsewhere);
  /// false: MPOL_PREFERRED (falls back to other nodes when `node` is full).
  bool strict = false;
};

/// Parses a sysfs cpu/node list such as "0", "0-3" or "0,2-3".
/// EINVAL on malformed text.
[[nodiscard]] Result<std::vector<int>> ParseNodeList(const std::string& text);

/// The online nodes from `<node_dir>/online` (default /sys/devices/system/node).
/// ENOENT when the kernel has no NUMA support (then the caller treats the
/// machine as one node).
[[nodiscard]] Result<std::vector<int>> OnlineNumaNodes(
    const std::string& node_dir = "/sys/devices/system/node");

/// The NUMA node of a PCI device from `<device_dir>/numa_node` (e.g.
/// /sys/bus/pci/devices/0000:00:03.0); -1 when the file says so or is absent.
/// EINVAL when the file holds something that is not a number.
[[nodiscard]] Result<int> DeviceNumaNode(const std::string& device_dir);

/// Applies `policy` to [addr, addr + len) with mbind(2), MPOL_MF_MOVE so pages
/// already present migrate. No-op when policy.node is -1, or when the machine
/// has a single node and policy.node is that node. EINVAL (detail names the
/// online nodes) when policy.node is not online; other errno from mbind.
[[nodiscard]] Result<void> BindToNode(void* addr, size_t len, const NumaPolicy& policy,
                                      const std::string& node_dir = "/sys/devices/system/node");

}  // namespace vfiod::dma
