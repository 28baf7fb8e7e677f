// An object's own record: closing the window between a reply and the state
// record. The state record is written behind the service (record_writer.h),
// so a vfiod killed right after it answered "created" or "mapped" left a
// record that does not name the new object, and a restart would drop the
// object the client was told it has. So a new container or mapping is
// stored together with a record of its own, before the reply: a sealed
// memfd under "r-<the object's fd name>" holding a StateRecord that
// describes that object alone (a mapping with its container). On start,
// MergeObjectRecords adds what those records describe and the newest state
// record lacks. Once a state record that describes the object is stored,
// its own record leaves the store (the store then holds one fd per object
// again, not two).
#pragma once

#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "lifecycle/listen_fds.h"
#include "lifecycle/state_record.h"
#include "proto/result.h"
#include "proto/unique_fd.h"

namespace vfiod::lifecycle {

/// "r-" + `object_fd_name`: where the own record of the object stored under
/// `object_fd_name` ("c-<id>" or "m-<id>") is kept.
[[nodiscard]] std::string ObjectRecordName(std::string_view object_fd_name);

/// Whether `name` is an own record's name ("r-c-<id>" or "r-m-<id>").
[[nodiscard]] bool IsObjectRecordName(std::string_view name);

/// The fd name of the object whose own record is stored under `name`
/// (the name without "r-"); empty when `name` is not an own record's name.
[[nodiscard]] std::string_view ObjectOfRecordName(std::string_view name);

/// `record` encoded in a new sealed memfd (sealed_memfd.h), ready to store.
/// Errors: WriteSealedMemfd's.
[[nodiscard]] Result<UniqueFd> SealRecord(const StateRecord& record);

/// What MergeObjectRecords added, and the own records it refused.
struct MergeReport {
  uint64_t containers = 0;  ///< added from their own records
  uint64_t mappings = 0;    ///< added from their own records
  /// One line per own record not used: unreadable, unsealed, corrupt, not
  /// describing exactly the object its name names, or a mapping whose
  /// container is in neither record. Superseded ones (the state record
  /// describes the object already) are not listed.
  std::vector<std::string> refused;
};

/// Adds to `record` (nullopt: no state record came back; then an empty one
/// of generation 0 is started when there is anything to add) every
/// container and mapping that an own record among `fds` describes and
/// `record` does not; `record`'s own description wins where both describe an
/// object (it is never older). The result keeps every promise of
/// DecodeStateRecord (checked by encoding and decoding it again: on failure
/// `record` is left unchanged and the reason is refused). next_id and
/// mapping_generation grow past every added id. The fds are only read.
[[nodiscard]] MergeReport MergeObjectRecords(std::optional<StateRecord>& record,
                                             std::span<const NamedFd> fds);

}  // namespace vfiod::lifecycle
