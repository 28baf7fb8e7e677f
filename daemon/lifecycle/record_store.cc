#include "lifecycle/record_store.h"

#include <optional>

#include "lifecycle/notify.h"
#include "lifecycle/sealed_memfd.h"

namespace vfiod::lifecycle {

Result<bool> StoreStateRecord(const StateRecord& record) {
  auto fd = VFIOD_TRY(WriteSealedMemfd("vfiod-state", EncodeStateRecord(record)));
  const int fds[] = {fd.get()};
  if (!VFIOD_TRY(StoreFds(RecordFdName(record.generation), fds))) {
    return false;
  }
  VFIOD_TRY(RemoveFds(RecordFdName(record.generation + 1)));
  return true;
}

Result<StateRecord> PickStateRecord(std::span<const NamedFd> fds) {
  std::optional<StateRecord> best;
  std::optional<Error> last_error;
  for (const NamedFd& named : fds) {
    if (!IsRecordFdName(named.name)) {
      continue;
    }
    auto bytes = ReadSealedMemfd(named.fd.get());
    auto record = bytes ? DecodeStateRecord(*bytes) : std::unexpected(bytes.error());
    if (!record) {
      last_error = record.error();
      continue;
    }
    if (!best || record->generation > best->generation) {
      best = std::move(*record);
    }
  }
  if (best) {
    return std::move(*best);
  }
  if (last_error) {
    return std::unexpected(*last_error);
  }
  return Fail(ENOENT, "state record", "none in the fd store");
}

}  // namespace vfiod::lifecycle
