#include "lifecycle/stored_fds.h"

#include <set>

#include "lifecycle/object_record.h"
#include "lifecycle/record_store.h"

namespace vfiod::lifecycle {

bool IsStoredObjectName(std::string_view name) {
  return name.starts_with("c-") || name.starts_with("g-") || name.starts_with("d-") ||
         name.starts_with("m-") || name.starts_with("rg-") || IsObjectRecordName(name) ||
         IsRecordFdName(name);
}

std::string GroupFdName(uint64_t container, int group) {
  return "g-" + std::to_string(container) + "-" + std::to_string(group);
}

std::string DeviceFdName(uint64_t container, std::string_view bdf) {
  std::string name = "d-" + std::to_string(container) + "-";
  for (char c : bdf) {
    name += c == ':' ? '_' : c;
  }
  return name;
}

std::string ContainerFdName(uint64_t container) { return "c-" + std::to_string(container); }

std::string MappingFdName(uint64_t mapping) { return "m-" + std::to_string(mapping); }

std::string RegionFdName(uint64_t region) { return "rg-" + std::to_string(region); }

SortedFds SortStoredFds(const StateRecord* record, std::vector<NamedFd> fds) {
  std::set<std::string> wanted;
  if (record != nullptr) {
    for (const ContainerRecord& c : record->containers) {
      wanted.insert(c.fd_name);
      for (int group : c.groups) {
        wanted.insert(GroupFdName(c.id, group));
      }
      for (const DeviceRecord& d : c.devices) {
        wanted.insert(d.fd_name);
      }
    }
    for (const RegionRecord& g : record->regions) {
      wanted.insert(g.fd_name);
    }
    for (const MappingRecord& m : record->mappings) {
      if (!m.fd_name.empty()) {
        wanted.insert(m.fd_name);
      }
    }
  }
  SortedFds out;
  for (NamedFd& named : fds) {
    if (!IsStoredObjectName(named.name)) {
      if (!out.socket) {
        out.socket = std::move(named.fd);
      } else {
        out.strays.push_back(std::move(named));
      }
    } else if (wanted.contains(named.name) && !out.described.contains(named.name)) {
      out.described.emplace(named.name, std::move(named.fd));
    } else {
      out.strays.push_back(std::move(named));
    }
  }
  for (const std::string& name : wanted) {
    if (!out.described.contains(name)) {
      out.missing.push_back(name);
    }
  }
  return out;
}

}  // namespace vfiod::lifecycle
