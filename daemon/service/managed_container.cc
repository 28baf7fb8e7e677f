#include "service/managed_container.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <bit>
#include <cstring>

#include "dma/backing_bar.h"
#include "dma/engine.h"
#include "service/managed_container_state.h"
#include "vfio/container.h"
#include "vfio/device.h"
#include "vfio/group.h"

namespace vfiod::service {

namespace {

Result<UniqueFd> DupForClient(int fd) {
  int copy = ::fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (copy < 0) {
    return ErrnoError("dup");
  }
  return UniqueFd(copy);
}

uint64_t MaxIova(const Placement& p) {
  uint64_t max = p.max_iova.value_or(UINT64_MAX);
  if (p.dma_mask_bits && *p.dma_mask_bits < 64) {
    max = std::min(max, (uint64_t{1} << *p.dma_mask_bits) - 1);
  }
  return max;
}

Result<dma::Backing> MakeBacking(const AllocRequest& r) {
  dma::NumaPolicy numa{r.numa_node.value_or(-1), false};
  switch (r.backing) {
    case wire::Backing::k4K:
      return dma::CreatePagesBacking(r.size, true, numa);
    case wire::Backing::kThp:
      return dma::CreateThpBacking(r.size, true, numa);
    case wire::Backing::kHugetlb2M:
      return dma::CreateHugetlbBacking(r.size, vfiod::kPage2M, numa);
    case wire::Backing::kHugetlb1G:
      return dma::CreateHugetlbBacking(r.size, vfiod::kPage1G, numa);
    default:
      return Fail(EINVAL, "dma.alloc", "not a backing vfiod allocates");
  }
}

}  // namespace

Result<ExtensionsView> ProbeExtensions(kernel::Kernel& kernel) {
  auto container = VFIOD_TRY(vfio::Container::Open(kernel));
  return ExtensionsOf(container->features());
}

ManagedContainer::ManagedContainer(ContainerId id) : id_(id), state_(std::make_unique<State>()) {}

ManagedContainer::~ManagedContainer() {
  std::lock_guard lock(mu_);
  Close();
}

Result<std::shared_ptr<ManagedContainer>> ManagedContainer::Create(kernel::Kernel& kernel,
                                                                   const vfio::PciSysfs& sysfs,
                                                                   ContainerId id,
                                                                   const std::vector<int>& groups,
                                                                   const Limits& limits) {
  std::shared_ptr<ManagedContainer> self(new ManagedContainer(id));
  State& s = *self->state_;
  s.container = VFIOD_TRY(vfio::Container::Open(kernel));
  for (int number : groups) {
    auto group = VFIOD_TRY(vfio::Group::Open(kernel, number, &sysfs));
    VFIOD_TRY(group->Attach(s.container));
    s.groups.push_back(std::move(group));
    self->group_numbers_.push_back(number);
  }
  dma::EngineConfig engine;
  engine.chunk_bytes = limits.map_chunk_bytes;
  s.space = VFIOD_TRY(dma::DmaSpace::Create(s.container, engine));
  self->extensions_ = ExtensionsOf(s.container->features());
  self->info_ = VFIOD_TRY(s.container->IommuInfo());  // nothing mapped yet
  return self;
}

ExtensionsView ManagedContainer::extensions() const { return extensions_; }

kernel::IommuInfo ManagedContainer::iommu_info() const {
  std::lock_guard lock(info_mu_);
  kernel::IommuInfo info = info_;
  if (info.dma_avail) {
    *info.dma_avail -= static_cast<uint32_t>(std::min<uint64_t>(*info.dma_avail, usage_.entries));
  }
  return info;
}

void ManagedContainer::Publish() {
  const dma::SpaceUsage usage = state_->space ? state_->space->usage() : dma::SpaceUsage{};
  std::lock_guard lock(info_mu_);
  usage_ = usage;
}

dma::SpaceUsage ManagedContainer::usage() const {
  std::lock_guard lock(info_mu_);
  return usage_;
}

MappingView ManagedContainer::ViewOf(const dma::MappingReport& r) const {
  MappingView v;
  v.container = id_;
  v.iova = r.iova;
  v.size = r.size;
  v.backing = wire::BackingName(r.backing);
  v.chunks = r.chunks;
  v.ioctls = r.map_ioctls;
  v.mmio = !r.pinned;
  if (v.mmio) {  // a BAR, mapped whole: is vfiod's view of it naturally aligned?
    v.aligned = r.vaddr % std::min<uint64_t>(std::bit_ceil(r.size), vfiod::kPage1G) == 0;
    v.mmio_no_pin = extensions_.mmio_no_pin;
  }
  v.segments = r.segments;
  return v;
}

Result<MapResult> ManagedContainer::Alloc(const AllocRequest& request, const ProgressFn& progress,
                                          StageClock* stages) {
  StageScope prepare(stages, Stage::kPrepare);
  auto backing = std::make_shared<const dma::Backing>(VFIOD_TRY(MakeBacking(request)));
  dma::MapRequest map;
  map.backing = backing;
  map.size = request.size;
  map.fixed_iova = request.placement.iova;
  map.max_iova = MaxIova(request.placement);
  UniqueFd client_fd = VFIOD_TRY(DupForClient(backing->fd()));
  prepare.End();
  dma::MappingReport report = VFIOD_TRY(MapInChunks(std::move(map), progress, stages));
  StageScope bookkeeping(stages, Stage::kBookkeeping);
  MappingView view = ViewOf(report);
  if (request.require_huge) {
    view.huge = VFIOD_TRY(RequireHuge(report.id));
  }
  view.numa = NumaView{backing->numa_node(), request.numa_source, {}};
  // Every page of a folio is on its node: one query per guaranteed page.
  if (auto placed = dma::NodesOf(backing->data(), backing->size(), backing->page_size())) {
    view.numa->placement = std::move(*placed);
  }
  return MapResult{std::move(view), std::move(client_fd), report.id};
}

Result<MapResult> ManagedContainer::MapRegion(std::shared_ptr<const dma::Backing> region,
                                              const MapFdRequest& request,
                                              const ProgressFn& progress, StageClock* stages) {
  dma::MapRequest map;
  map.backing = std::move(region);
  map.offset = request.offset;
  map.size = request.size;
  map.segments = request.segments;
  map.fixed_iova = request.placement.iova;
  map.max_iova = MaxIova(request.placement);
  dma::MappingReport report = VFIOD_TRY(MapInChunks(std::move(map), progress, stages));
  StageScope bookkeeping(stages, Stage::kBookkeeping);
  MappingView view = ViewOf(report);
  if (request.require_huge) {
    view.huge = VFIOD_TRY(RequireHuge(report.id));
  }
  return MapResult{std::move(view), UniqueFd(), report.id};
}

Result<dma::MappingReport> ManagedContainer::MapInChunks(dma::MapRequest map,
                                                         const ProgressFn& progress,
                                                         StageClock* stages) {
  StageScope plan(stages, Stage::kPlan);
  std::unique_ptr<dma::MapJob> job = VFIOD_TRY(state_->space->BeginMap(std::move(map)));
  plan.End();
  for (;;) {
    StageScope ioctl(stages, Stage::kIoctl);
    auto step = job->Step();
    ioctl.End();
    if (!step) {
      Publish();  // a rollback that left chunks keeps them as a mapping
      return std::unexpected(step.error());
    }
    dma::MapProgress p = job->progress();
    bool go_on = !progress || progress(p.bytes_done, p.bytes_total);
    if (*step) {
      Publish();
      return job->report();
    }
    if (!go_on) {
      // Destroying the unfinished job unmaps its chunks and frees its IOVA.
      job.reset();
      Publish();
      return Fail(ECANCELED, "dma.map",
                  "abandoned after " + std::to_string(p.bytes_done) + " of " +
                      std::to_string(p.bytes_total) + " bytes");
    }
  }
}

Result<std::shared_ptr<const dma::Backing>> ManagedContainer::BarView(const std::string& bdf,
                                                                      uint32_t bar) {
  auto& kept = state_->bar_views[{bdf, bar}];
  if (!kept) {
    auto device = VFIOD_TRY(DeviceFor(bdf));
    auto view = dma::CreateBarBacking(device, bar);
    if (!view) {
      state_->bar_views.erase({bdf, bar});
      return std::unexpected(std::move(view).error());
    }
    kept = std::make_shared<const dma::Backing>(std::move(*view));
  }
  return kept;
}

Result<MapResult> ManagedContainer::MapBar(const MapBarRequest& request, StageClock* stages) {
  StageScope prepare(stages, Stage::kPrepare);
  std::shared_ptr<const dma::Backing> backing = VFIOD_TRY(BarView(request.bdf, request.bar));
  prepare.End();
  dma::MapRequest map;
  map.backing = backing;
  map.fixed_iova = request.placement.iova;
  map.max_iova = MaxIova(request.placement);
  const dma::MappingReport mapped = VFIOD_TRY(MapInChunks(std::move(map), nullptr, stages));
  StageScope bookkeeping(stages, Stage::kBookkeeping);
  state_->bars[mapped.id] = BarSource{request.bdf, request.bar};
  return MapResult{ViewOf(mapped), UniqueFd(), mapped.id};
}

Result<dma::HugeShare> ManagedContainer::RequireHuge(uint64_t engine_id) {
  auto share = state_->space->HugeShareOf(engine_id);
  if (share && share->all_huge()) {
    return *share;
  }
  if (auto undone = Unmap(engine_id); !undone) {
    spdlog::warn("container {}: undoing mapping {} (not all huge): {}", id_, engine_id,
                 undone.error().message());
  }
  if (!share) {
    return Fail(share.error().code, "require thp",
                "could not tell whether the memory is in huge folios: " + share.error().message());
  }
  return Fail(ENOMEM, "require thp",
              std::to_string(share->huge_bytes) + " of " + std::to_string(share->bytes) +
                  " bytes are in folios of 2 MiB or more (read from " + share->source +
                  "); nothing was mapped");
}

Result<dma::UnmapReport> ManagedContainer::Unmap(uint64_t engine_id) {
  if (!state_->space) {
    return Fail(ENOENT, "dma.free", "the container is closed");
  }
  auto unmapped = state_->space->Unmap(engine_id);
  Publish();  // also after an error: an EIO count mismatch still releases it
  if (!state_->space->Find(engine_id)) {
    state_->bars.erase(engine_id);
  }
  return unmapped;
}

Result<MappingView> ManagedContainer::Describe(uint64_t engine_id) const {
  if (!state_->space) {
    return Fail(ENOENT, "dma.info", "the container is closed");
  }
  return ViewOf(VFIOD_TRY(state_->space->Find(engine_id)));
}

std::vector<std::pair<int, int>> ManagedContainer::group_fds() const {
  std::vector<std::pair<int, int>> out;
  for (const auto& group : state_->groups) {
    if (group && group->fd() >= 0) {
      out.emplace_back(group->number(), group->fd());
    }
  }
  return out;
}

Result<dma::DmaSpace::Keepable> ManagedContainer::Keepable(uint64_t engine_id) const {
  if (!state_->space) {
    return Fail(ENOENT, "keep mapping", "the container is closed");
  }
  return state_->space->KeepableOf(engine_id);
}

std::optional<ManagedContainer::BarSource> ManagedContainer::BarOf(uint64_t engine_id) const {
  auto it = state_->bars.find(engine_id);
  return it == state_->bars.end() ? std::nullopt : std::optional<BarSource>(it->second);
}

std::optional<dma::ContiguityReport> ManagedContainer::Contiguity(uint64_t engine_id) {
  if (!state_->space) {
    return std::nullopt;
  }
  auto record = state_->space->Find(engine_id);
  if (!record || !record->pinned) {
    return std::nullopt;
  }
  auto report = state_->space->Contiguity(engine_id);
  if (!report) {
    spdlog::warn("container {}: contiguity of mapping {}: {}", id_, engine_id,
                 report.error().message());
    return std::nullopt;
  }
  return *report;
}

Result<DeviceVfioView> ManagedContainer::ProbeDevice(const std::string& bdf) {
  auto device = VFIOD_TRY(DeviceFor(bdf));
  DeviceVfioView view;
  view.info = device->info();
  for (uint32_t i = 0; i < view.info.num_regions; ++i) {
    if (auto region = device->RegionInfo(i); region && region->size > 0) {
      view.regions.push_back(*region);
    }
  }
  for (uint32_t i = 0; i < view.info.num_irqs; ++i) {
    if (auto irq = device->IrqInfo(i); irq) {
      view.irqs.push_back(*irq);
    }
  }
  return view;
}

int ManagedContainer::container_fd() const {
  return closed_ || !state_ || !state_->container ? -1 : state_->container->fd();
}

dma::UnmapReport ManagedContainer::Close() {
  if (closed_) {
    return {};
  }
  closed_ = true;
  State& s = *state_;
  dma::UnmapReport unmapped;
  if (s.space) {
    auto all = s.space->UnmapAll();
    if (all) {
      unmapped = *all;
    } else {
      spdlog::error("container {}: unmap all: {}", id_, all.error().message());
    }
  }
  {
    std::lock_guard lock(info_mu_);
    usage_ = {};
  }
  s.requests.clear();   // disabled while the devices are open
  s.bar_views.clear();  // unmapped above: they hold their devices
  s.devices.clear();
  ForgetHeld();
  s.space.reset();
  for (auto it = s.groups.rbegin(); it != s.groups.rend(); ++it) {
    if (auto detached = (*it)->Detach(); !detached && detached.error().code != EINVAL) {
      // EBUSY: a client still holds a device fd; the kernel detaches the
      // group when that fd closes. Nothing stays mapped either way.
      spdlog::debug("container {}: group {}: {}", id_, (*it)->number(), detached.error().message());
    }
  }
  s.groups.clear();
  s.container.reset();
  return unmapped;
}

}  // namespace vfiod::service
