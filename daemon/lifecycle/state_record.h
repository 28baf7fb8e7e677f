// The state record: what vfiod must know after a restart that the kernel and
// the stored fds cannot tell it (who owns what, names, IOVAs, sharing, quota
// use). A versioned, self-describing JSON document with a checksum, kept in a
// sealed memfd in the fd store (record_store.h). A record is never trusted
// blindly: DecodeStateRecord refuses anything it does not fully understand.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "proto/result.h"

namespace vfiod::lifecycle {

/// The record format this build writes and the only one it reads.
/// 2: a mapping lists its kernel entries (what re-adoption re-points).
/// 3: the service's id counters, and the resume token of the session owning
/// an unnamed container or mapping.
/// 4: a BAR mapping names its device and region ("bar"), so it can be taken
/// over too; registered client regions ("regions"), and the region a
/// mapping is a slice of ("region").
/// 5: a container lists the devices vfiod holds open in it ("devices"), whose
/// fds are in the store too, so a restarted vfiod takes them over (no reopen,
/// hence no reset) and arms their request IRQs again.
/// Version 3 and 4 records (written by the vfiod before) are still read.
inline constexpr uint32_t kStateRecordVersion = 5;

/// The oldest record format this build reads.
inline constexpr uint32_t kOldestStateRecordVersion = 3;

/// Length of a session's resume token: lowercase hex digits (128 bits).
inline constexpr size_t kSessionTokenLength = 32;

/// Whether `text` has the form of a resume token: kSessionTokenLength
/// lowercase hex digits.
[[nodiscard]] bool IsSessionToken(std::string_view text);

/// A device vfiod holds open in a container (version 5): its device fd is in
/// the store as `fd_name` ("d-<container>-<bdf>", stored_fds.h).
struct DeviceRecord {
  std::string bdf;  ///< "0000:00:05.0"
  int group = 0;    ///< its IOMMU group: one of the container's `groups`
  std::string fd_name;
  friend bool operator==(const DeviceRecord&, const DeviceRecord&) = default;
};

/// A container: its VFIO container fd is in the store as `fd_name`.
struct ContainerRecord {
  uint64_t id = 0;
  std::string name;  ///< empty: belonged to a session
  uid_t owner_uid = 0;
  std::vector<uid_t> shared_users;   ///< sorted, unique
  std::vector<gid_t> shared_groups;  ///< sorted, unique
  std::vector<int> groups;           ///< IOMMU group numbers attached
  std::string fd_name;               ///< FDNAME of the container fd ("c-<id>")
  /// Resume token of the owning session (unnamed only; empty when named).
  std::string session;
  std::vector<DeviceRecord> devices;  ///< bdfs unique, as opened (version 5; none before)
  friend bool operator==(const ContainerRecord&, const ContainerRecord&) = default;
};

/// One VFIO DMA entry of a mapping (one MAP_DMA): [iova, iova + size) maps
/// [offset, offset + size) of the mapping's backing. Re-adoption re-points
/// exactly these entries (VFIO_DMA_MAP_FLAG_VADDR needs each entry's exact
/// IOVA and size).
struct EntryRecord {
  uint64_t iova = 0;
  uint64_t size = 0;
  uint64_t offset = 0;
  friend bool operator==(const EntryRecord&, const EntryRecord&) = default;
};

/// Granule of entry IOVAs, sizes and offsets: the smallest IOMMU page vfiod maps.
inline constexpr uint64_t kEntryGranule = 4096;

/// A client's mapping: [iova, iova + size) of `container`.
struct MappingRecord {
  uint64_t id = 0;
  uint64_t container = 0;
  uint64_t iova = 0;
  uint64_t size = 0;
  std::string backing;  ///< a wire::BackingName (proto/backing.h)
  std::string fd_name;  ///< FDNAME of the backing memfd; empty: none (a BAR)
  uid_t owner_uid = 0;
  std::string name;  ///< empty: belonged to a session
  /// Resume token of the owning session (unnamed only; empty when named).
  std::string session;
  bool mmio = false;
  /// A BAR (mmio only): the device ("0000:00:05.0") and region index it
  /// maps, reopened through the container's group on restart. Empty: not
  /// known (a version 3 record): such a BAR cannot be taken over.
  std::string bar_bdf;
  uint32_t bar_index = 0;
  /// The region (RegionRecord::id) this mapping is a slice of, whose memory
  /// it shares (then fd_name is empty: the region's fd is the memory, and
  /// entry offsets are offsets in the region's file); 0: none.
  uint64_t region = 0;
  /// By IOVA, tiling [iova, iova + size) exactly. Empty: not recorded (a
  /// producer that does not know them yet); re-adoption cannot re-point such
  /// a mapping and must release it.
  std::vector<EntryRecord> entries;
  friend bool operator==(const MappingRecord&, const MappingRecord&) = default;
};

/// A client's registered memory (dma.register): [offset, offset + size) of
/// the client's file, whose fd is in the store as `fd_name` ("rg-<id>").
struct RegionRecord {
  uint64_t id = 0;
  uid_t owner_uid = 0;
  /// Still registered, by the session with this resume token; empty: no
  /// longer registered, only kept alive by mappings that are its slices.
  std::string session;
  std::string fd_name;
  uint64_t offset = 0;
  uint64_t size = 0;
  /// Hugetlb memory, charged to owner_uid as a whole while it is held (its
  /// slices are charged nothing more).
  bool charged = false;
  friend bool operator==(const RegionRecord&, const RegionRecord&) = default;
};

/// What one uid is charged (restored so quotas hold across the restart).
struct OwnerRecord {
  uid_t uid = 0;
  uint64_t locked_bytes = 0;
  uint64_t mappings = 0;
  uint64_t containers = 0;
  friend bool operator==(const OwnerRecord&, const OwnerRecord&) = default;
};

struct StateRecord {
  uint32_t version = kStateRecordVersion;
  uint64_t generation = 0;  ///< grows with every record stored; newest wins
  /// The service's next id (sessions, containers, regions): past every id
  /// handed out, so none is handed out twice across a restart.
  uint64_t next_id = 1;
  /// The generation new mapping slots start at (a mapping id is generation
  /// << 32 | slot + 1): past every mapping id ever handed out.
  uint32_t mapping_generation = 0;
  std::vector<ContainerRecord> containers;
  std::vector<RegionRecord> regions;  ///< version 4
  std::vector<MappingRecord> mappings;
  std::vector<OwnerRecord> owners;
  friend bool operator==(const StateRecord&, const StateRecord&) = default;
};

/// The record as JSON: {"format": "vfiod-state", "version": 1, ..., "checksum":
/// FNV-1a 64 of the document without "checksum", in hex}. Deterministic: the
/// same record encodes to the same bytes.
[[nodiscard]] std::string EncodeStateRecord(const StateRecord& record);

/// The record `bytes` encode, checked in full.
/// Errors (EINVAL, op "state record", the detail names the field): not JSON,
/// not an object; "format" is not "vfiod-state"; "version" is not between
/// kOldestStateRecordVersion and kStateRecordVersion (a newer or much older
/// daemon's record is not guessed at); a BAR's "bar" is not a device name
/// (1 to 32 of [0-9a-f:.]) and a region index (at most 255), or is set on
/// memory; a container's device has such a bad name, a group not among the
/// container's, or repeats a device of the container; a region has id 0, an id not below next_id or
/// repeated, a session that is neither empty nor a token, size 0, a range that wraps, or an fd name
/// that is invalid or repeated; a mapping's "region" names no listed region, or is set on a BAR or
/// a mapping with an fd name; the checksum is missing or does not match; a key is missing, of the
/// wrong type, out of range (uid/gid past 2^32-2, group past INT_MAX) or unknown; an id is 0 or
/// repeated, or a container id is not below next_id, or a mapping id's generation is not below
/// mapping_generation; a session token is neither empty nor kSessionTokenLength lowercase hex
/// digits, or is set on a named object or missing on an unnamed one; a mapping names an unknown
/// container, has size 0 or wraps past 2^64; an fd name is invalid (IsValidFdName) or repeated; a
/// mapping's entries (when listed) have size 0, are not aligned to kEntryGranule, wrap (IOVA or
/// offset), are out of IOVA order, overlap, leave a gap, or do not cover the mapping's [iova, iova
/// + size) exactly.
[[nodiscard]] Result<StateRecord> DecodeStateRecord(std::string_view bytes);

}  // namespace vfiod::lifecycle
