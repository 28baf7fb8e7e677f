// Release requests: the kernel wants a device back (an unbind, a hot
// unplug). vfio-pci then signals the device's request IRQ, and repeats it
// every 10 s, while its unbind waits in the kernel until every fd of the
// device is closed, a client's copies included.
//
// vfiod arms that IRQ on every device it opens (ManagedContainer::
// SetRequestSink); the release watcher's thread hears it and calls
// OnReleaseRequested, which tells every session with a stake in the
// container holding the device (device.release_requested) and, after
// device.release_grace_seconds, RevokeForRelease tears the container down as
// container.destroy would (all DMA unmapped, so the device reaches no memory;
// vfiod's device, group and container fds closed; BAR mappings freed) and
// tells them again (device.revoked). vfiod cannot close a client's device fd:
// the unbind completes once the clients closed theirs (the client library
// does on the first notice); until then the group lingers as after a destroy.
//
// Across a live restart the device fds vfiod holds stay in the fd store
// (KeepDevicesLocked), so the next vfiod takes them over and arms their
// request IRQs again: a device a client still holds is heard as before.
#include <spdlog/fmt/fmt.h>
#include <spdlog/spdlog.h>

#include "journal/sink.h"
#include "service/managed_container.h"
#include "service/release_watcher.h"
#include "service/service.h"

namespace vfiod::service {

size_t Service::WatchedRequests() const { return watcher_ ? watcher_->watched() : 0; }

void Service::WatchRequests(ManagedContainer& managed) {
  if (!watcher_) {
    return;
  }
  const ContainerId id = managed.id();
  std::lock_guard clock(managed.mu());
  managed.SetRequestSink([this, id](const std::string& bdf, UniqueFd eventfd) {
    watcher_->Watch(id, bdf, std::move(eventfd));
  });
}

std::set<SessionId> Service::StakeholdersLocked(const ContainerSlot& slot) const {
  std::set<SessionId> out;
  auto add = [&](SessionId s) {
    auto it = sessions_.find(s);
    if (it != sessions_.end() && !it->second.detached) {
      out.insert(s);
    }
  };
  add(slot.owner);
  if (auto r = releases_.find(slot.id); r != releases_.end()) {
    for (const auto& [bdf, sessions] : r->second.device_sessions) {
      for (SessionId s : sessions) {
        add(s);
      }
    }
  }
  ForEachMappingLocked([&](MappingId, const MappingSlot& m) {
    if (m.container == slot.id) {
      add(m.owner);
    }
  });
  if (out.empty()) {
    // Nobody known: a named container whose device fds went out before a
    // restart (the sessions they went to are gone with that vfiod). Whoever
    // holds them now is one of the users the container belongs to.
    for (const auto& [id, session] : sessions_) {
      const uid_t uid = session.identity.uid;
      if (!session.detached && (uid == slot.owner_uid || slot.shared.users.contains(uid))) {
        out.insert(id);
      }
    }
  }
  return out;
}

void Service::OnReleaseRequested(ContainerId container, const std::string& bdf) {
  const auto grace = std::chrono::seconds(config_.device.release_grace_seconds);
  const auto due = std::chrono::steady_clock::now() + grace;
  std::set<SessionId> told;
  ReleaseNotice notice;
  uid_t owner = 0;
  {
    std::lock_guard lock(mu_);
    auto it = containers_.find(container);
    if (it == containers_.end() || !it->second.managed) {
      return;  // torn down meanwhile
    }
    ReleaseSlot& release = releases_[container];
    if (release.due) {
      spdlog::debug("{}: the kernel asks again (container {} goes at its deadline)", bdf,
                    container);
      return;
    }
    release.due = due;
    release.bdf = bdf;
    told = StakeholdersLocked(it->second);
    owner = it->second.owner_uid;
  }
  journal::Emit({.kind = journal::Kind::kReleaseRequested,
                 .message = fmt::format("{}: the kernel asks for it back (an unbind or removal); "
                                        "container {} is revoked in {} s ({} sessions told)",
                                        bdf, container, grace.count(), told.size()),
                 .uid = owner,
                 .container = container,
                 .bdfs = {bdf}});
  notice.kind = ReleaseNotice::Kind::kRequested;
  notice.bdf = bdf;
  notice.container = container;
  notice.grace_ms =
      static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(grace).count());
  notice.reason = "the kernel asks for " + bdf +
                  " back (an unbind or a removal): close every fd of it and stop using container " +
                  std::to_string(container) + ", which is revoked in " +
                  std::to_string(grace.count()) + " s";
  TellRelease(told, std::move(notice));
  if (grace.count() == 0) {
    RevokeForRelease(container);
  } else {
    watcher_->ExpireAt(container, due);
  }
}

void Service::RevokeForRelease(ContainerId container) {
  ChangeNote note{*this};
  ContainerSlot slot;
  std::string bdf;
  std::set<SessionId> told;
  std::map<SessionId, std::vector<MappingId>> lost;
  {
    std::lock_guard lock(mu_);
    auto it = containers_.find(container);
    auto release = releases_.find(container);
    if (it == containers_.end() || !it->second.managed || release == releases_.end() ||
        !release->second.due) {
      return;  // destroyed by its owner meanwhile
    }
    bdf = release->second.bdf;
    told = StakeholdersLocked(it->second);
    ForEachMappingLocked([&](MappingId id, const MappingSlot& m) {
      if (m.container == container && m.owner != 0) {
        lost[m.owner].push_back(id);
      }
    });
    slot = std::move(it->second);
    containers_.erase(it);
  }
  const uint64_t bytes = Teardown(slot);
  ReleaseNotice notice;
  notice.kind = ReleaseNotice::Kind::kRevoked;
  notice.bdf = bdf;
  notice.container = container;
  notice.unmapped_bytes = bytes;
  notice.reason = "the kernel asked for " + bdf + " back and the grace period (" +
                  std::to_string(config_.device.release_grace_seconds) + " s) is over: container " +
                  std::to_string(container) +
                  " was destroyed (its DMA unmapped, vfiod's fds of it closed); the unbind "
                  "completes once every device fd a client holds is closed";
  journal::Emit({.kind = journal::Kind::kContainerRevoked,
                 .message = fmt::format("container {} revoked: the kernel asked for {}; {} bytes "
                                        "unmapped",
                                        container, bdf, bytes),
                 .uid = slot.owner_uid,
                 .container = container,
                 .bdfs = {bdf},
                 .bytes = bytes});
  TellRelease(told, std::move(notice), lost);
}

void Service::TellRelease(const std::set<SessionId>& sessions, ReleaseNotice notice,
                          const std::map<SessionId, std::vector<MappingId>>& lost) {
  std::lock_guard lock(notify_mu_);
  if (!notify_release_) {
    return;
  }
  for (SessionId s : sessions) {
    auto mine = lost.find(s);
    notice.mappings = mine == lost.end() ? std::vector<MappingId>() : mine->second;
    notify_release_(s, notice);
  }
}

}  // namespace vfiod::service
