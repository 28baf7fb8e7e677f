// Plain value types the service returns: what a client may learn about
// devices, containers and mappings. The RPC layer turns them into JSON.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "dma/contiguity.h"
#include "dma/huge_share.h"
#include "dma/numa.h"
#include "dma/scatter.h"
#include "kernel/vfio_api.h"
#include "proto/backing.h"
#include "proto/unique_fd.h"
#include "service/config_space.h"
#include "vfio/pci_sysfs.h"

namespace vfiod::service {

/// Ids are positive and unique per daemon run; 0 never names anything.
using SessionId = uint64_t;
using ContainerId = uint64_t;
using MappingId = uint64_t;
using RegionId = uint64_t;

/// What the container's IOMMU supports (VFIO_CHECK_EXTENSION).
struct ExtensionsView {
  bool type1v2 = false;
  bool unmap_all = false;
  bool update_vaddr = false;
  bool mmio_no_pin = false;
};

/// Who besides its owner may use a container (container.create's share_with,
/// container.share / container.unshare): users by uid, groups by gid (a
/// caller is in a group when it is its primary or a supplementary group).
struct ShareList {
  /// The most users, and the most groups, one list holds: one request may
  /// name no more, and a container is shared with no more in all (each
  /// entry is kept, stored in the state record and checked on every access).
  static constexpr size_t kMaxEntries = 64;
  std::set<uid_t> users;
  std::set<gid_t> groups;
  [[nodiscard]] bool empty() const { return users.empty() && groups.empty(); }
};

/// What a session hears when the kernel wants a device back (an unbind, a
/// hot unplug: vfio-pci's request IRQ) and the container holding it has to
/// go: device.release_requested, then device.revoked (service_release.cc).
struct ReleaseNotice {
  enum class Kind {
    kRequested,  ///< the kernel asked; the container is revoked after grace_ms
    kRevoked,    ///< the container was revoked: unmapped, vfiod's fds closed
  };
  Kind kind = Kind::kRequested;
  std::string bdf;                  ///< the device the kernel asked for
  ContainerId container = 0;        ///< the container that holds it (and goes)
  uint64_t grace_ms = 0;            ///< kRequested: time left before the revoke
  uint64_t unmapped_bytes = 0;      ///< kRevoked: bytes the revoke unmapped
  std::vector<MappingId> mappings;  ///< kRevoked: the session's own mappings it freed
  std::string reason;               ///< why, for people
};

/// A destroyed container whose IOMMU groups are still held by a device fd
/// vfiod handed out (re-opening the group fails with EBUSY). The groups stay
/// charged (one container each holder) until the fds close.
struct LingeringView {
  ContainerId container = 0;
  uid_t owner_uid = 0;
  std::vector<int> groups;     ///< still held
  std::vector<uid_t> holders;  ///< the users handed a device fd of these groups
  uint64_t seconds = 0;        ///< since the container was destroyed
};

struct StatusView {
  std::string version;
  std::string kernel;  ///< "linux" or "model"
  int api_version = 1;
  ExtensionsView extensions;  ///< probed on a fresh container at start
  uint64_t uptime_s = 0;
  uint64_t clients = 0;
  uint64_t containers = 0;
  uint64_t mappings = 0;
  uint64_t locked_bytes = 0;             ///< charged locked bytes: mappings and hugetlb regions
  uint64_t region_locked_bytes = 0;      ///< the part held by registered hugetlb regions
  uint64_t max_locked_bytes = 0;         ///< limits.max_locked_bytes (kUnlimited: none)
  uint64_t dma_entries = 0;              ///< VFIO mapping entries in use, all containers
  std::vector<LingeringView> lingering;  ///< root: all; others: where they hold or own
  /// Whether what vfiod holds survives a restart (the service manager's fd
  /// store is in use); false when started by hand.
  bool fd_store = false;
  uint64_t detached_sessions = 0;  ///< kept by a restart, waiting for session.resume
  /// With an fd store: the fds charged to its budget (the most the live
  /// objects may keep there; root: all users', others: their own), the
  /// budget and one non-root user's share of it (FdBudget).
  uint64_t stored_fds_charged = 0;
  uint64_t max_stored_fds = 0;
  uint64_t max_stored_fds_per_user = 0;
};

/// The VFIO view of a device (only when it is bound to vfio-pci, usable).
struct DeviceVfioView {
  kernel::DeviceInfo info;
  std::vector<kernel::RegionInfo> regions;
  std::vector<kernel::IrqInfo> irqs;
};

struct DeviceView {
  vfio::PciDevice pci;
  bool viable = false;
  bool permitted = false;                 ///< the caller may use it under the policy
  std::optional<ConfigSpaceView> config;  ///< device.info: read from sysfs
  std::optional<DeviceVfioView> vfio;     ///< device.info: through the caller's container
};

struct ContainerView {
  ContainerId id = 0;
  std::string name;  ///< empty when the container belongs to its session
  uid_t owner_uid = 0;
  ShareList shared;  ///< who else may use it
  std::vector<int> groups;
  kernel::IommuInfo iommu;
  ExtensionsView extensions;
  uint64_t mappings = 0;
  uint64_t mapped_bytes = 0;
  uint64_t dma_entries_used = 0;
};

/// A mapping as a client sees it. The service keeps only a small record per
/// mapping and builds this on demand: the summary fields (id to mmio_no_pin)
/// always, chunks/ioctls/segments/contiguity only where documented.
/// Where a mapping's memory was asked to be and where it is (dma.alloc).
struct NumaView {
  int policy = -1;     ///< the node vfiod asked the kernel for; -1: none
  std::string source;  ///< "request", "device" (the devices' node) or "none"
  /// Where the pages are, read back after the allocation (move_pages(2));
  /// empty when the kernel could not say (no NUMA support).
  dma::NodePlacement placement;
};

struct MappingView {
  MappingId id = 0;
  ContainerId container = 0;
  std::string name;
  uid_t owner_uid = 0;
  uint64_t iova = 0;
  uint64_t size = 0;
  std::string backing;  ///< wire::BackingName of the mapping's backing
  uint64_t chunks = 0;  ///< VFIO mapping entries it uses
  uint64_t ioctls = 0;  ///< MAP_DMA calls it took
  bool mmio = false;
  bool aligned = false;      ///< BAR: mapped at its natural alignment in vfiod
  bool mmio_no_pin = false;  ///< BAR: mapped with the kernel's MMIO no-pin path
  /// A scatter list's pieces (offsets in the file or region), in request
  /// order; empty for a single range.
  std::vector<dma::PlacedPiece> segments;
  std::optional<dma::ContiguityReport> contiguity;  ///< dma.info only
  std::optional<dma::HugeShare> huge;               ///< map replies with "require": "thp" only
  std::optional<NumaView> numa;                     ///< dma.alloc replies only
};

/// Where to put a mapping in IOVA space; unset fields leave vfiod free.
struct Placement {
  std::optional<uint64_t> iova;      ///< exactly here
  std::optional<uint64_t> max_iova;  ///< highest IOVA byte the device can reach
  std::optional<int> dma_mask_bits;  ///< as max_iova = 2^bits - 1
};

struct AllocRequest {
  ContainerId container = 0;
  uint64_t size = 0;
  wire::Backing backing = wire::Backing::k4K;  ///< one of the first four (not memfd, bar)
  Placement placement;
  /// The node to allocate on; -1: anywhere; unset: the node of the
  /// container's devices when they share one (Service::Alloc fills it in).
  std::optional<int> numa_node;
  std::string numa_source = "request";  ///< NumaView::source of numa_node
  std::string name;                     ///< non-empty: the mapping outlives the session
  bool require_huge = false;            ///< "require": "thp": all in folios of 2 MiB or more
};

/// A client memory region: a memfd / hugetlbfs file the session registered
/// once (dma.register) and maps slices of without passing its fd again.
struct RegionView {
  RegionId id = 0;
  uint64_t file_offset = 0;  ///< where the region starts in the client's file
  uint64_t size = 0;
  uint64_t page_size = 0;  ///< the file's page size (its folios: 4 KiB, 2 MiB, 1 GiB)
  std::string backing;     ///< wire::BackingName: memfd, hugetlb-2m or hugetlb-1g
};

struct RegisterRequest {
  UniqueFd fd;  ///< the client's memfd / hugetlbfs file
  uint64_t offset = 0;
  uint64_t size = 0;  ///< 0: the rest of the file past `offset`
};

/// What dma.map_fd maps: [offset, offset + size) of the fd, or of the region.
struct MapFdRequest {
  ContainerId container = 0;
  UniqueFd fd;                     ///< the client's memfd / hugetlbfs file, or
  std::optional<RegionId> region;  ///< one of the session's registered regions
  uint64_t offset = 0;
  uint64_t size = 0;  ///< 0: the rest of the file or region past `offset`
  /// A scatter list of the file or region, mapped as one mapping; when
  /// non-empty it replaces offset/size. placement.iova, if set, is the first
  /// segment's IOVA (then no segment names one).
  std::vector<dma::ScatterPiece> segments;
  Placement placement;
  std::string name;
  bool require_huge = false;  ///< "require": "thp": all in folios of 2 MiB or more
};

struct MapBarRequest {
  ContainerId container = 0;
  std::string bdf;
  uint32_t bar = 0;
  Placement placement;
  std::string name;
};

/// A new mapping, with the fd handed to the client when there is one.
struct MapResult {
  MappingView mapping;
  UniqueFd fd;             ///< dma.alloc: a dup of the backing memfd; else invalid
  uint64_t engine_id = 0;  ///< the container's DmaSpace id of it (service-internal)
};

/// How device.reset reset a device.
enum class ResetMethod : uint8_t {
  kFunction,  ///< VFIO_DEVICE_RESET (FLR, PM or a device-specific reset)
  kHot,       ///< VFIO_DEVICE_PCI_HOT_RESET of the device's slot or bus
};

/// What device.open did about the state the device's previous users left
/// (reset between owners; service_handover.cc).
enum class HandOverReset : uint8_t {
  kNotNeeded,    ///< only the caller (or nobody) had it since its last reset, or the caller is root
  kFunction,     ///< reset now with VFIO_DEVICE_RESET
  kHot,          ///< reset now with a hot reset of its slot or bus
  kUnavailable,  ///< a reset was due and none exists: handed over as it is
  kDisabled,     ///< reset.between_owners is off
};

struct OpenedDevice {
  std::string bdf;
  UniqueFd fd;  ///< a dup of vfiod's device fd, for the client
  kernel::DeviceInfo info;
  HandOverReset reset = HandOverReset::kNotNeeded;
};

/// Called after each map chunk with (done_bytes, total_bytes). Returning
/// false abandons the map: what was mapped of it is undone (ECANCELED).
using ProgressFn = std::function<bool(uint64_t, uint64_t)>;

}  // namespace vfiod::service
