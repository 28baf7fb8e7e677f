#include "lifecycle/object_record.h"

#include <algorithm>
#include <set>

#include "lifecycle/sealed_memfd.h"
#include "lifecycle/stored_fds.h"

namespace vfiod::lifecycle {

namespace {

constexpr std::string_view kPrefix = "r-";

/// The own record stored under `named`, if it describes exactly the object
/// its name names: a container alone, or a mapping with its container.
Result<StateRecord> ReadOwnRecord(const NamedFd& named) {
  const std::string_view object = ObjectOfRecordName(named.name);
  const std::string bytes = VFIOD_TRY(ReadSealedMemfd(named.fd.get()));
  StateRecord own = VFIOD_TRY(DecodeStateRecord(bytes));
  const bool container = object.starts_with("c-") && own.containers.size() == 1 &&
                         own.mappings.empty() && own.regions.empty() &&
                         own.containers[0].fd_name == object;
  // A BAR keeps no fd of its own: its record names it by its id alone. A
  // slice of a region has none either, and carries the region's record.
  const bool mapping = own.containers.size() == 1 && own.mappings.size() == 1 &&
                       object == MappingFdName(own.mappings[0].id) &&
                       (own.mappings[0].fd_name == object ||
                        ((own.mappings[0].mmio || own.mappings[0].region != 0) &&
                         own.mappings[0].fd_name.empty())) &&
                       own.mappings[0].container == own.containers[0].id &&
                       own.regions.size() == (own.mappings[0].region != 0 ? 1U : 0U);
  if (!container && !mapping) {
    return Fail(EINVAL, "own record", "does not describe " + std::string(object) + " alone");
  }
  return own;
}

}  // namespace

std::string ObjectRecordName(std::string_view object_fd_name) {
  return std::string(kPrefix) + std::string(object_fd_name);
}

bool IsObjectRecordName(std::string_view name) {
  return name.starts_with("r-c-") || name.starts_with("r-m-");
}

std::string_view ObjectOfRecordName(std::string_view name) {
  return IsObjectRecordName(name) ? name.substr(kPrefix.size()) : std::string_view();
}

Result<UniqueFd> SealRecord(const StateRecord& record) {
  return WriteSealedMemfd("vfiod-object", EncodeStateRecord(record));
}

MergeReport MergeObjectRecords(std::optional<StateRecord>& record, std::span<const NamedFd> fds) {
  MergeReport report;
  std::vector<StateRecord> own;
  for (const NamedFd& named : fds) {
    if (!IsObjectRecordName(named.name)) {
      continue;
    }
    if (auto read = ReadOwnRecord(named)) {
      own.push_back(std::move(*read));
    } else {
      report.refused.push_back(named.name + ": " + read.error().message());
    }
  }
  if (own.empty()) {
    return report;
  }
  StateRecord merged = record.value_or(StateRecord{});
  std::set<uint64_t> containers;
  std::set<uint64_t> mappings;
  for (const ContainerRecord& c : merged.containers) {
    containers.insert(c.id);
  }
  for (const MappingRecord& m : merged.mappings) {
    mappings.insert(m.id);
  }
  MergeReport added;
  // Containers first: a mapping's container may be new as well.
  for (const StateRecord& r : own) {
    if (r.mappings.empty() && containers.insert(r.containers[0].id).second) {
      merged.containers.push_back(r.containers[0]);
      merged.next_id = std::max(merged.next_id, r.next_id);
      ++added.containers;
    }
  }
  for (const StateRecord& r : own) {
    if (r.mappings.empty() || mappings.contains(r.mappings[0].id)) {
      continue;
    }
    const MappingRecord& m = r.mappings[0];
    if (!containers.contains(m.container)) {
      report.refused.push_back(ObjectRecordName(MappingFdName(m.id)) + ": its container " +
                               std::to_string(m.container) + " is in no record");
      continue;
    }
    // A region is in the state record before its register call replies.
    const bool region_known =
        m.region == 0 || std::any_of(merged.regions.begin(), merged.regions.end(),
                                     [&](const RegionRecord& g) { return g.id == m.region; });
    if (!region_known) {
      report.refused.push_back(ObjectRecordName(MappingFdName(m.id)) + ": its region " +
                               std::to_string(m.region) + " is not in the state record");
      continue;
    }
    mappings.insert(m.id);
    merged.mappings.push_back(m);
    merged.next_id = std::max(merged.next_id, r.next_id);
    merged.mapping_generation = std::max(merged.mapping_generation, r.mapping_generation);
    ++added.mappings;
  }
  if (added.containers + added.mappings == 0) {
    return report;
  }
  auto checked = DecodeStateRecord(EncodeStateRecord(merged));
  if (!checked) {
    report.refused.push_back("own records not merged: " + checked.error().message());
    return report;
  }
  record = std::move(*checked);
  report.containers = added.containers;
  report.mappings = added.mappings;
  return report;
}

}  // namespace vfiod::lifecycle
