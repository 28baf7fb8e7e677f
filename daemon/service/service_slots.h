// The records of the service's registries (Service's private state, see
// service.h): one per session, registered region, container, live mapping
// and so on. Plain data; every one is guarded by Service::mu_ (its contract
// in service.h), and only Service and its .cc files use them.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "dma/backing.h"
#include "service/policy.h"
#include "service/views.h"
#include "vfio/pci_sysfs.h"

namespace vfiod::service {

class ManagedContainer;

namespace slots {

/// A client's session (one connection, or a detached one Readopt keeps).
struct Session {
  Identity identity;
  uint32_t regions = 0;  ///< registered regions, reserved ones included
  std::string token;     ///< resume token (SessionToken)
  /// Kept by Readopt for a client that died with the previous vfiod: no
  /// connection, ended at `expires` unless resumed.
  bool detached = false;
  std::chrono::steady_clock::time_point expires;
};

/// A registered region: the adopted client file, owned by one session.
struct RegionSlot {
  SessionId owner = 0;
  uid_t owner_uid = 0;
  std::shared_ptr<const dma::Backing> backing;
};

/// Registry entry of a container; the VFIO state lives in `managed`.
struct ContainerSlot {
  ContainerId id = 0;
  std::string name;     ///< unique among its owner's names; empty: unnamed
  SessionId owner = 0;  ///< creating session; 0 once named and orphaned
  uid_t owner_uid = 0;
  ShareList shared;                           ///< who else may use it
  std::shared_ptr<ManagedContainer> managed;  ///< null while being created
  std::vector<DeviceId> devices;              ///< policy for whoever else uses it
  /// The sysfs facts of each device a dma.map_bar mapped a BAR of, by BDF,
  /// read by its first one (BarDevice): the container holds that device
  /// open from then until it closes, and a device vfio-pci holds open keeps
  /// its IDs, group and BARs (an unbind waits for the release, which
  /// revokes the container; a BAR resize needs the driver gone). So a
  /// dma.map_bar reads sysfs once per device, not per call (issue 15: the
  /// read was most of its own time on a fast kernel).
  std::map<std::string, vfio::PciDevice> bar_devices = {};
  /// DevicesNode's answer, kept from the first dma.alloc: the groups of a
  /// container, and the NUMA node of their devices, never change.
  std::optional<int> devices_node = std::nullopt;
};

/// What a container's releases need (service_release.cc), beside its slot.
struct ReleaseSlot {
  /// The sessions handed a device fd out of it, by BDF (told of releases).
  std::map<std::string, std::set<SessionId>> device_sessions;
  /// Set when the kernel asked for `bdf`: the container is revoked then.
  std::optional<std::chrono::steady_clock::time_point> due;
  std::string bdf;
};

/// A destroyed container whose groups a handed-out device fd still holds.
struct LingeringSlot {
  uid_t owner_uid = 0;
  std::vector<int> groups;  ///< still in Service::groups_held_
  std::set<uid_t> holders;  ///< each charged one container until released
  std::chrono::steady_clock::time_point since;
  bool probing = false;  ///< a re-check is running (off mu_)
};

/// One live mapping in the ownership index, kept small (a container may
/// hold 65535): who owns it and where the engine keeps it; everything else
/// is the engine's record (service.h, "One home per mapping"). Its name, if any,
/// is in Service::mapping_names_. Slots live in a deque and are reused; a mapping's
/// id is generation << 32 | (slot index + 1), so an id is never reused.
struct MappingSlot {
  ContainerId container = 0;  ///< 0: a free slot
  SessionId owner = 0;        ///< 0: named, survives its creator
  uint64_t engine_id = 0;     ///< the container DmaSpace's id of it
  uint64_t charged = 0;       ///< locked bytes charged to owner_uid (0: MMIO, covered)
  uint32_t generation = 0;
  uid_t owner_uid = 0;
  RegionId region = 0;  ///< the region it is a slice of (shares its memory); 0: none
};

/// A mapping's index entry copied out of mu_, to read the engine's record
/// of it under its container's mutex.
struct MappingRef {
  MappingId id = 0;
  uint64_t engine_id = 0;
  uid_t owner_uid = 0;
  std::string name;
  std::shared_ptr<ManagedContainer> managed;
};

/// What a uid is charged: its reservations included.
struct Usage {
  uint64_t locked_bytes = 0;
  uint64_t mappings = 0;
  uint64_t containers = 0;
};

/// A region whose fd went to the fd store (Service::stored_regions_).
struct StoredRegion {
  uid_t owner_uid = 0;
  std::weak_ptr<const dma::Backing> backing;
};

}  // namespace slots
}  // namespace vfiod::service
