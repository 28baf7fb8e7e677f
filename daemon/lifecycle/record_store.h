// Keeping the state record in the fd store so that a record is there at every
// moment. The store keys fds by name but a name may hold several fds, and
// FDSTOREREMOVE=1 drops every fd of a name. So a record cannot be replaced
// under one name (removing the old one would remove the new one too, and
// removing first would leave a moment with none). Records alternate between
// two names by generation: the new record is stored under the other name
// first, then the old name is removed. A crash between the two leaves both:
// on start the newest record that decodes wins.
#pragma once

#include <span>
#include <string>
#include <string_view>

#include "lifecycle/listen_fds.h"
#include "lifecycle/state_record.h"
#include "proto/result.h"

namespace vfiod::lifecycle {

/// The two FDNAMEs a record lives under: generation even, generation odd.
inline constexpr std::string_view kRecordFdNames[2] = {"vfiod-state-0", "vfiod-state-1"};

/// The FDNAME of a record of `generation`.
[[nodiscard]] inline std::string_view RecordFdName(uint64_t generation) {
  return kRecordFdNames[generation % 2];
}

/// Whether `name` is one a record is stored under.
[[nodiscard]] inline bool IsRecordFdName(std::string_view name) {
  return name == kRecordFdNames[0] || name == kRecordFdNames[1];
}

/// Writes `record` into a sealed memfd, stores it under
/// RecordFdName(record.generation), then removes the other name's record.
/// Returns false (nothing sent) without $NOTIFY_SOCKET.
/// Errors: WriteSealedMemfd's, NotifyWithFds's. When the removal fails, the
/// new record is stored (and newer), so start-up still picks it.
[[nodiscard]] Result<bool> StoreStateRecord(const StateRecord& record);

/// The newest record among `fds` that are named as records, sealed and decode
/// (see DecodeStateRecord); the fds are only read. ENOENT when there is none;
/// else the error of the last record refused (EPERM unsealed, EINVAL corrupt
/// or of an unknown version), so the caller can log why.
[[nodiscard]] Result<StateRecord> PickStateRecord(std::span<const NamedFd> fds);

}  // namespace vfiod::lifecycle
