// DMA operations of the service: allocation, client fd and BAR mappings,
// listing and freeing. See service.h for the locking rules.
#include <spdlog/fmt/fmt.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <set>

#include "dma/engine.h"
#include "dma/numa.h"
#include "journal/sink.h"
#include "lifecycle/stored_fds.h"
#include "service/managed_container.h"
#include "service/service.h"

namespace vfiod::service {

namespace {

SResult<void> CheckSize(const char* op, uint64_t size) {
  if (size == 0) {
    return Refuse(ErrorKind::kInvalidParams, EINVAL, op, "size: must be greater than zero");
  }
  return {};
}

/// Adopts a map_fd request's file: [offset, +size) of it, or, for segments,
/// from 0 to the end of the last one (segment offsets stay file offsets).
/// A single range is then made relative to the adopted backing. Every
/// failure is the fd's (kBadFd): not open, wrong file, too short, unmappable.
SResult<std::shared_ptr<const dma::Backing>> AdoptForMap(MapFdRequest& request) {
  uint64_t begin = request.offset;
  uint64_t length = request.size;
  if (!request.segments.empty()) {
    begin = 0;
    length = 0;
    for (const dma::ScatterPiece& piece : request.segments) {
      length = std::max(length, piece.offset + piece.size);
    }
  }
  Result<dma::Backing> adopted = dma::AdoptClientFd(std::move(request.fd), begin, length);
  if (!adopted) {
    return std::unexpected(ServiceError(ErrorKind::kBadFd, std::move(adopted).error()));
  }
  if (request.segments.empty()) {
    request.offset = 0;
    request.size = adopted->size();
  }
  return std::make_shared<const dma::Backing>(std::move(*adopted));
}

}  // namespace

ProgressFn Service::WatchSession(const Caller& caller, const std::string& name,
                                 const ProgressFn& progress) {
  return [this, session = caller.session, named = !name.empty(), &progress](uint64_t done,
                                                                            uint64_t total) {
    // After the last chunk there is nothing left to abandon, and RunMap
    // checks the session itself: no registry lock on a one-chunk map.
    if (!named && done < total) {
      std::lock_guard lock(mu_);  // allowed: the container's mutex may be held
      if (!sessions_.contains(session)) {
        return false;  // nobody will ever use or free this mapping
      }
    }
    return !progress || progress(done, total);
  };
}

SResult<MapResult> Service::RunMap(const Caller& caller, ContainerId id, uint64_t pinned_bytes,
                                   const std::string& name, const MapWork& work, bool covered,
                                   RegionId region) {
  ChangeNote note{*this, false, caller.stages};
  FdBudget::Ticket ticket;  // given back unless the mapping is made
  std::shared_ptr<ManagedContainer> managed;
  {
    StageScope lookup(caller.stages, Stage::kLookup);
    std::lock_guard lock(mu_);
    managed = VFIOD_TRY(FindContainerLocked(caller, id, Access::kUse, "dma"));
    VFIOD_TRY(ReserveLocked(caller, pinned_bytes, 1, 0));
    auto charged = ChargeStoredFds(caller, kStoredFdsPerMapping, "dma");
    if (!charged) {
      UnreserveLocked(caller.identity.uid, pinned_bytes, 1, 0);
      return std::unexpected(std::move(charged).error());
    }
    ticket = std::move(*charged);
  }
  const uid_t uid = caller.identity.uid;
  StageScope lock_wait(caller.stages, Stage::kLockWait);
  std::lock_guard clock(managed->mu());
  lock_wait.End();
  if (managed->closed()) {
    std::lock_guard lock(mu_);
    UnreserveLocked(uid, pinned_bytes, 1, 0);
    return Refuse(ErrorKind::kNotFound, ENOENT, "container", "destroyed while waiting");
  }
  const auto started = std::chrono::steady_clock::now();
  SResult<MapResult> outcome = work(*managed);
  const uint64_t took_us = MicrosSince(started);
  StageScope bookkeeping(caller.stages, Stage::kBookkeeping);
  std::unique_lock lock(mu_);
  if (!outcome) {
    UnreserveLocked(uid, pinned_bytes, 1, 0);
    return std::unexpected(std::move(outcome).error());
  }
  MappingView& view = outcome->mapping;
  if (name.empty() && !sessions_.contains(caller.session)) {
    // The client is gone (killed mid-request): nobody will ever free this.
    // The unmap is a kernel call: not under mu_, which every user's calls
    // need (the container's mutex, still held, keeps it ours meanwhile).
    lock.unlock();
    (void)managed->Unmap(outcome->engine_id);
    lock.lock();
    UnreserveLocked(uid, pinned_bytes, 1, 0);
    return Refuse(ErrorKind::kNotFound, ECONNRESET, "dma", "the session closed during the map");
  }
  const uint64_t charged = view.mmio || covered ? 0 : view.size;
  UnreserveLocked(uid, pinned_bytes, 0, 0);
  usage_[uid].locked_bytes += charged;  // the real figure, already within quota
  view.name = name;
  view.owner_uid = uid;
  view.id = AddMappingLocked(MappingSlot{id, name.empty() ? caller.session : 0, outcome->engine_id,
                                         charged, 0, uid, region},
                             name);
  ticket.Assign(lifecycle::MappingFdName(view.id));  // given back by RemoveMappingFd
  stats_.RecordMap(uid, view.size, view.ioctls, took_us);
  lock.unlock();  // the store is a sendmsg: not under mu_ (the container's mutex is held)
  // One entry per request, off mu_ (a journal entry is a sendmsg too).
  if (journal::Enabled(journal::InfoOf(journal::Kind::kMappingCreated).level)) {
    journal::Emit(
        {.kind = journal::Kind::kMappingCreated,
         .message = fmt::format("mapping {}: container {} iova {:#x} size {:#x} {} ({} "
                                "ioctls)",
                                view.id, id, view.iova, view.size, view.backing, view.ioctls),
         .uid = uid,
         .session = caller.session,
         .container = id,
         .mapping = view.id,
         .bytes = view.size,
         .iova = view.iova});
  }
  bookkeeping.End();
  StageScope record(caller.stages, Stage::kRecord);
  StoreMappingFd(*managed, view.id, outcome->engine_id);
  return outcome;
}

SResult<MapResult> Service::Alloc(const Caller& caller, AllocRequest request,
                                  const ProgressFn& progress) {
  VFIOD_TRY(CheckSize("dma.alloc", request.size));
  StageScope lookup(caller.stages, Stage::kLookup);
  if (!request.numa_node) {
    request.numa_node = DevicesNode(request.container);
    request.numa_source = *request.numa_node >= 0 ? "device" : "none";
  } else if (*request.numa_node < 0) {
    request.numa_source = "none";
  } else if (auto online = dma::CheckNodeOnline(*request.numa_node); !online) {
    return Refuse(ErrorKind::kInvalidParams, EINVAL, "dma.alloc",
                  "numa_node: " + online.error().detail);
  }
  lookup.End();
  ProgressFn watched = WatchSession(caller, request.name, progress);
  return RunMap(caller, request.container, request.size, request.name,
                [&](ManagedContainer& c) { return c.Alloc(request, watched, caller.stages); });
}

int Service::DevicesNode(ContainerId container) {
  std::vector<int> groups;
  {
    std::lock_guard lock(mu_);
    auto it = containers_.find(container);
    if (it == containers_.end() || !it->second.managed) {
      return -1;
    }
    if (it->second.devices_node.has_value()) {
      return it->second.devices_node.value_or(-1);
    }
    groups = it->second.managed->groups();
  }
  std::set<int> nodes;
  for (int group : groups) {
    for (const vfio::GroupMember& member : sysfs_.GroupMembers(group)) {
      auto dev = sysfs_.Get(member.name);
      nodes.insert(dev ? dev->numa_node : -1);
    }
  }
  // A node the kernel does not have (a model's sysfs, a stale attribute)
  // is no preference, not an error: the client asked for none.
  int node = -1;
  if (nodes.size() == 1 && *nodes.begin() >= 0 && dma::CheckNodeOnline(*nodes.begin())) {
    node = *nodes.begin();
  }
  std::lock_guard lock(mu_);
  if (auto it = containers_.find(container); it != containers_.end()) {
    it->second.devices_node = node;
  }
  return node;
}

SResult<MapResult> Service::MapFd(const Caller& caller, MapFdRequest request,
                                  const ProgressFn& progress) {
  StageScope lookup(caller.stages, Stage::kLookup);
  std::shared_ptr<const dma::Backing> region = VFIOD_TRY(ResolveMapFd(caller, request));
  lookup.End();
  // A hugetlb region's pages are charged as long as the region's memory is
  // held (service.h, "Locked memory"); its slices charge nothing more.
  const bool covered = region && IsChargedRegion(*region);
  const uint64_t size = covered ? 0 : request.size;
  std::string name = request.name;
  ProgressFn watched = WatchSession(caller, name, progress);
  return RunMap(
      caller, request.container, size, name,
      [&](ManagedContainer& c) -> SResult<MapResult> {
        if (!region) {
          StageScope prepare(caller.stages, Stage::kPrepare);
          region = VFIOD_TRY(AdoptForMap(request));
        }
        return c.MapRegion(std::move(region), request, watched, caller.stages);
      },
      covered, request.region.value_or(0));
}

SResult<MapResult> Service::MapBar(const Caller& caller, const MapBarRequest& request) {
  StageScope lookup(caller.stages, Stage::kLookup);
  vfio::PciDevice dev = VFIOD_TRY(BarDevice(caller, request.container, request.bdf));
  if (request.bar > 5 || request.bar >= dev.bars.size() || dev.bars[request.bar].size == 0 ||
      dev.bars[request.bar].io) {
    return Refuse(ErrorKind::kInvalidParams, EINVAL, "dma.map_bar",
                  "bar: BAR " + std::to_string(request.bar) + " of " + dev.bdf +
                      " is not an implemented memory BAR");
  }
  {
    // As for device.open: a device of another container (or of none) is the
    // caller's mistake, not something to try on the kernel.
    std::lock_guard lock(mu_);
    auto managed =
        VFIOD_TRY(FindContainerLocked(caller, request.container, Access::kUse, "dma.map_bar"));
    const auto& groups = managed->groups();
    if (!dev.iommu_group ||
        std::find(groups.begin(), groups.end(), *dev.iommu_group) == groups.end()) {
      return Refuse(
          ErrorKind::kInvalidParams, EINVAL, "dma.map_bar",
          dev.bdf + "'s IOMMU group is not in container " + std::to_string(request.container));
    }
  }
  lookup.End();
  MapBarRequest canonical = request;
  canonical.bdf = dev.bdf;
  SResult<MapResult> mapped =
      RunMap(caller, request.container, 0, request.name,
             [&](ManagedContainer& c) { return c.MapBar(canonical, caller.stages); });
  if (mapped) {
    // The container holds the device open now, until it closes: its facts
    // hold as long (ContainerSlot::bar_devices).
    StageScope bookkeeping(caller.stages, Stage::kBookkeeping);
    std::lock_guard lock(mu_);
    if (auto it = containers_.find(request.container); it != containers_.end()) {
      it->second.bar_devices.try_emplace(dev.bdf, std::move(dev));
    }
  }
  return mapped;
}

SResult<std::vector<MappingView>> Service::ListMappings(
    const Caller& caller, std::optional<ContainerId> container) const {
  std::vector<MappingRef> refs;
  {
    std::lock_guard lock(mu_);
    if (container) {
      auto it = containers_.find(*container);
      if (it == containers_.end()) {
        return Refuse(ErrorKind::kNotFound, ENOENT, "dma.list",
                      "no container " + std::to_string(*container) + " visible to this client");
      }
      VFIOD_TRY(Authorize(caller, it->second, Access::kSee, "dma.list"));
    }
    refs = VisibleMappingsLocked(caller, container);
  }
  return DescribeAll(refs);
}

SResult<MappingView> Service::MappingInfo(const Caller& caller, MappingId mapping) {
  MappingRef ref;
  {
    std::lock_guard lock(mu_);
    const MappingSlot* slot =
        VFIOD_TRY(MappingForLocked(caller, mapping, Access::kSee, "dma.info"));
    ref = RefLocked(mapping, *slot);
  }
  std::lock_guard clock(ref.managed->mu());
  auto view = Describe(ref);
  if (!view) {  // freed or destroyed meanwhile
    return Refuse(ErrorKind::kNotFound, ENOENT, "dma.info",
                  "no mapping " + std::to_string(mapping) + " visible to this client");
  }
  view->contiguity = ref.managed->Contiguity(ref.engine_id);
  return std::move(*view);
}

SResult<uint64_t> Service::FreeMapping(const Caller& caller, MappingId mapping) {
  ChangeNote note{*this, false, caller.stages};
  std::shared_ptr<ManagedContainer> managed;
  ContainerId container = 0;
  uint64_t engine_id = 0;
  {
    StageScope lookup(caller.stages, Stage::kLookup);
    std::lock_guard lock(mu_);
    const MappingSlot* slot =
        VFIOD_TRY(MappingForLocked(caller, mapping, Access::kManage, "dma.free"));
    container = slot->container;
    managed = containers_.at(container).managed;
    engine_id = slot->engine_id;
  }
  StageScope lock_wait(caller.stages, Stage::kLockWait);
  std::lock_guard clock(managed->mu());
  lock_wait.End();
  StageScope ioctl(caller.stages, Stage::kIoctl);
  const auto started = std::chrono::steady_clock::now();
  Result<dma::UnmapReport> unmapped = managed->Unmap(engine_id);
  const uint64_t took_us = MicrosSince(started);
  ioctl.End();
  StageScope bookkeeping(caller.stages, Stage::kBookkeeping);
  std::unique_lock lock(mu_);
  if (FindMappingLocked(mapping) == nullptr) {
    return Refuse(ErrorKind::kNotFound, ENOENT, "dma.free", "freed meanwhile");
  }
  if (!unmapped) {
    return std::unexpected(ServiceError(unmapped.error()));
  }
  RemoveMappingLocked(mapping);
  stats_.RecordUnmap(caller.identity.uid, unmapped->bytes, unmapped->ioctls, took_us);
  lock.unlock();
  if (journal::Enabled(journal::InfoOf(journal::Kind::kMappingFreed).level)) {
    journal::Emit({.kind = journal::Kind::kMappingFreed,
                   .message = fmt::format("mapping {} freed: container {}, {:#x} bytes unmapped "
                                          "({} ioctls)",
                                          mapping, container, unmapped->bytes, unmapped->ioctls),
                   .uid = caller.identity.uid,
                   .session = caller.session,
                   .container = container,
                   .mapping = mapping,
                   .bytes = unmapped->bytes});
  }
  bookkeeping.End();
  StageScope record(caller.stages, Stage::kRecord);
  RemoveMappingFd(mapping);
  return unmapped->bytes;
}

}  // namespace vfiod::service
