// NUMA placement of DMA memory: bind a range to the node the device sits on
// (or a node the caller names) with mbind(2), or a thread's allocations with
// set_mempolicy(2), and read back where pages really are with move_pages(2);
// all through syscall(2), so no libnuma is needed. A policy must be in place
// before the memory is faulted in.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
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

/// The online nodes (OnlineNumaNodes; a kernel without NUMA has node 0 only)
/// when `node` is one of them. EINVAL, detail "NUMA node N is not online
/// (online: ...)", otherwise.
[[nodiscard]] Result<std::vector<int>> CheckNodeOnline(
    int node, const std::string& node_dir = "/sys/devices/system/node");

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

/// The calling thread's allocation policy, set to `policy` for this object's
/// life and back to the default (MPOL_DEFAULT) when it ends. For allocations
/// that a mapping's mbind does not steer: hugetlbfs's fallocate(2) allocates
/// with the task's policy, not with the policy of any mapping of the file.
/// Move-only; must end on the thread that applied it.
class ThreadNodePolicy {
 public:
  /// Sets the policy (a no-op object when BindToNode would be a no-op).
  /// EINVAL (detail names the online nodes) when policy.node is not online;
  /// other errno from set_mempolicy.
  [[nodiscard]] static Result<ThreadNodePolicy> Apply(
      const NumaPolicy& policy, const std::string& node_dir = "/sys/devices/system/node");

  ThreadNodePolicy(ThreadNodePolicy&& other) noexcept : active_(other.active_) {
    other.active_ = false;
  }
  ThreadNodePolicy& operator=(ThreadNodePolicy&&) = delete;
  ThreadNodePolicy(const ThreadNodePolicy&) = delete;
  ThreadNodePolicy& operator=(const ThreadNodePolicy&) = delete;
  ~ThreadNodePolicy();

 private:
  explicit ThreadNodePolicy(bool active) : active_(active) {}
  bool active_;
};

/// Where the pages of a range are now.
struct NodePlacement {
  /// Bytes per NUMA node; key -1 holds pages that are not present (or that
  /// the kernel could not place).
  std::map<int, uint64_t> bytes;
  /// The one node that holds every byte, else -1 (spread, or not present).
  [[nodiscard]] int node() const;
};

/// Reads where [addr, addr + len) is with move_pages(2) without moving
/// anything, one query per `page` bytes (the backing's page size: every page
/// of a folio is on the folio's node). `addr` and `len` multiples of `page`,
/// a power of two of at least 4 KiB, else EINVAL; errno of move_pages
/// otherwise (ENOSYS: a kernel without NUMA).
[[nodiscard]] Result<NodePlacement> NodesOf(const void* addr, uint64_t len, uint64_t page);

}  // namespace vfiod::dma
