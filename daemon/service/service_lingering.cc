// Groups that outlive their container: a device fd vfiod handed out keeps
// its IOMMU group (and the kernel's container behind it) alive after
// container.destroy. vfiod cannot see the client's fd, but the kernel tells:
// while a device fd is open it holds the group file, and opening the group
// again fails with EBUSY at once (Linux vfio_group_fops_open; the model does
// the same). Such groups stay in groups_held_ and charged to the users they
// were handed to until a re-check finds them free.
#include <fcntl.h>
#include <spdlog/spdlog.h>

#include "service/service.h"
#include "vfio/group.h"

namespace vfiod::service {

namespace {

std::string Uids(const std::set<uid_t>& uids) {
  std::string out;
  for (uid_t u : uids) {
    out += (out.empty() ? "uid " : ", uid ") + std::to_string(u);
  }
  return out.empty() ? "nobody known" : out;
}

}  // namespace

bool Service::GroupStillHeld(int group) {
  auto probe = vfio::Group::Open(*kernel_, group);
  if (probe) {
    return false;  // closed again as `probe` goes
  }
  if (probe.error().code != EBUSY) {
    spdlog::debug("group {} re-check: {} (taken as released)", group, probe.error().message());
  }
  return probe.error().code == EBUSY;
}

void Service::RecheckLingering() {
  std::vector<std::pair<ContainerId, std::vector<int>>> todo;
  {
    std::lock_guard lock(mu_);
    for (auto& [id, slot] : lingering_) {
      if (!slot.probing) {
        slot.probing = true;
        todo.emplace_back(id, slot.groups);
      }
    }
  }
  for (auto& [id, groups] : todo) {
    std::vector<int> held;
    for (int g : groups) {
      if (GroupStillHeld(g)) {
        held.push_back(g);
      }
    }
    std::lock_guard lock(mu_);
    LingeringSlot& slot = lingering_.at(id);
    slot.probing = false;
    for (int g : slot.groups) {
      if (std::find(held.begin(), held.end(), g) == held.end()) {
        groups_held_.erase(g);
      }
    }
    slot.groups = std::move(held);
    if (slot.groups.empty()) {
      for (uid_t holder : slot.holders) {
        UnreserveLocked(holder, 0, 0, 1);
      }
      spdlog::info("container {}: the device fds handed to {} are closed; its groups are free", id,
                   Uids(slot.holders));
      lingering_.erase(id);
    }
  }
}

std::optional<std::string> Service::GroupHolderLocked(int group) const {
  auto held = groups_held_.find(group);
  if (held == groups_held_.end()) {
    return std::nullopt;
  }
  const ContainerId id = held->second;
  if (auto c = containers_.find(id); c != containers_.end()) {
    return "container " + std::to_string(id) + " of uid " + std::to_string(c->second.owner_uid);
  }
  if (auto l = lingering_.find(id); l != lingering_.end()) {
    return "a device fd vfiod handed to " + Uids(l->second.holders) + " (container " +
           std::to_string(id) + ", destroyed; the group is free once that fd is closed)";
  }
  return "vfiod (another request is using it right now)";
}

std::vector<LingeringView> Service::LingeringViewsLocked(std::optional<uid_t> uid) const {
  std::vector<LingeringView> out;
  const auto now = std::chrono::steady_clock::now();
  for (const auto& [id, slot] : lingering_) {
    if (uid && slot.owner_uid != *uid && !slot.holders.contains(*uid)) {
      continue;
    }
    LingeringView v;
    v.container = id;
    v.owner_uid = slot.owner_uid;
    v.groups = slot.groups;
    v.holders.assign(slot.holders.begin(), slot.holders.end());
    v.seconds = static_cast<uint64_t>(
        std::chrono::duration_cast<std::chrono::seconds>(now - slot.since).count());
    out.push_back(std::move(v));
  }
  return out;
}

}  // namespace vfiod::service
