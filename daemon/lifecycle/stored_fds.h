// Sorting the fds a restarted vfiod gets back (LISTEN_FDS) against the state
// record it picked: what the record describes goes to re-adoption, what it
// does not is dropped (a crash between storing an fd and writing the record
// that names it), and what it names but did not come back is reported, so
// the caller releases it. Any fd not stored under an object's name is the
// listening socket (socket activation).
#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "lifecycle/listen_fds.h"
#include "lifecycle/state_record.h"

namespace vfiod::lifecycle {

/// Whether `name` is one vfiod stores objects under: "c-<id>" (container),
/// "g-<container id>-<group>" (group), "d-<container id>-<bdf>" (device), "m-<id>" (mapping
/// backing), "rg-<id>" (a registered region's file), an object's own record ("r-c-<id>",
/// "r-m-<id>": object_record.h), or a state record's name (record_store.h).
[[nodiscard]] bool IsStoredObjectName(std::string_view name);

/// "g-<container>-<group>": the name a container's group fd is stored under.
[[nodiscard]] std::string GroupFdName(uint64_t container, int group);
/// "d-<container>-<bdf>", each ':' of the bdf as '_' (an FDNAME has no
/// ':'): the name a device fd vfiod holds in a container is stored under.
[[nodiscard]] std::string DeviceFdName(uint64_t container, std::string_view bdf);
/// "c-<id>": a container's fd.
[[nodiscard]] std::string ContainerFdName(uint64_t container);
/// "m-<id>": a mapping's backing fd (also the name of a BAR's or a region
/// slice's own record, which have no fd of their own).
[[nodiscard]] std::string MappingFdName(uint64_t mapping);
/// "rg-<id>": a registered region's file.
[[nodiscard]] std::string RegionFdName(uint64_t region);

struct SortedFds {
  /// Described by the record: by FDNAME, one fd each.
  std::map<std::string, UniqueFd> described;
  /// Object names the record does not describe, or a second fd under a name
  /// (the caller removes the name from the store and closes them), and the
  /// records themselves, state records and own records (read already: the
  /// caller closes them; the store keeps its copy until the caller removes
  /// it).
  std::vector<NamedFd> strays;
  /// Names the record describes that did not come back.
  std::vector<std::string> missing;
  /// The first fd not stored under an object's name; further ones are strays.
  std::optional<UniqueFd> socket;
};

/// Sorts `fds` against `record` (nullptr: no valid record, so every stored
/// object is a stray). A container describes "c-<id>", one group name per
/// group and its devices' fd names; a region its fd_name; a mapping its fd_name when set.
[[nodiscard]] SortedFds SortStoredFds(const StateRecord* record, std::vector<NamedFd> fds);

}  // namespace vfiod::lifecycle
