// Helpers shared by the config and policy tests: a name resolver with a fixed,
// known user and group database, so tests do not depend on the host's.
#pragma once

#include <map>
#include <optional>
#include <string>

#include "service/config.h"

namespace vfiod::service::testing {

inline NameResolver FakeNames() {
  static const std::map<std::string, uid_t> kUsers = {{"root", 0}, {"alice", 1000}, {"bob", 1001}};
  static const std::map<std::string, gid_t> kGroups = {
      {"root", 0}, {"vfio-users", 990}, {"devs", 2000}, {"ops", 2001}};
  NameResolver names;
  names.user = [](const std::string& name) -> std::optional<uid_t> {
    auto it = kUsers.find(name);
    return it == kUsers.end() ? std::nullopt : std::optional<uid_t>(it->second);
  };
  names.group = [](const std::string& name) -> std::optional<gid_t> {
    auto it = kGroups.find(name);
    return it == kGroups.end() ? std::nullopt : std::optional<gid_t>(it->second);
  };
  return names;
}

}  // namespace vfiod::service::testing
