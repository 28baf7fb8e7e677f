// ManagedContainer's part in a live restart (issue 14): taking over what a
// previous vfiod left in the fd store, and handing over to a successor.
#include <spdlog/spdlog.h>

#include <algorithm>

#include "dma/backing_bar.h"
#include "service/managed_container.h"
#include "service/managed_container_state.h"

namespace vfiod::service {

Result<std::pair<std::shared_ptr<ManagedContainer>, dma::AdoptReport>> ManagedContainer::Adopt(
    kernel::Kernel& kernel, ContainerId id, Inherited inherited, const Limits& limits) {
  std::shared_ptr<ManagedContainer> self(new ManagedContainer(id));
  self->adopted_ = true;
  State& s = *self->state_;
  s.container = VFIOD_TRY(
      vfio::Container::Adopt(kernel, kernel::KernelFd(&kernel, inherited.container.release())));
  for (auto& [number, fd] : inherited.groups) {
    s.groups.push_back(VFIOD_TRY(
        vfio::Group::Adopt(kernel, number, kernel::KernelFd(&kernel, fd.release()), s.container)));
    self->group_numbers_.push_back(number);
  }
  for (InheritedDevice& inherited_device : inherited.devices) {
    self->AdoptDevice(kernel, std::move(inherited_device));
  }
  dma::EngineConfig engine;
  engine.chunk_bytes = limits.map_chunk_bytes;
  s.space = VFIOD_TRY(dma::DmaSpace::Create(s.container, engine));
  for (dma::AdoptRequest& request : inherited.mappings) {
    auto bar = inherited.bars.find(request.key);
    if (bar != inherited.bars.end() && !request.backing) {
      request.backing = self->ReopenBar(bar->second);
    }
  }
  dma::AdoptReport report = VFIOD_TRY(s.space->Adopt(std::move(inherited.mappings)));
  for (const dma::AdoptOutcome& outcome : report.mappings) {
    auto bar = inherited.bars.find(outcome.key);
    if (outcome.id != 0 && bar != inherited.bars.end()) {
      s.bars[outcome.id] = bar->second;
    }
  }
  self->extensions_ = ExtensionsOf(s.container->features());
  // DMA_AVAIL is the entry limit less the entries mapped, and only the
  // adopted mappings are left: add them back for the limit.
  self->info_ = VFIOD_TRY(s.container->IommuInfo());
  self->Publish();
  if (std::optional<uint32_t>& avail = self->info_.dma_avail; avail) {
    *avail += static_cast<uint32_t>(self->usage_.entries);
  }
  return std::pair{std::move(self), std::move(report)};
}

void ManagedContainer::AdoptDevice(kernel::Kernel& kernel, InheritedDevice inherited) {
  kernel::KernelFd fd(&kernel, inherited.fd.release());
  auto group = std::find_if(state_->groups.begin(), state_->groups.end(),
                            [&](const auto& g) { return g->number() == inherited.group; });
  if (group == state_->groups.end()) {
    spdlog::warn("restart: container {}: device {}: its group {} did not come back", id_,
                 inherited.bdf, inherited.group);
    return;
  }
  auto device = vfio::Device::Adopt(*group, inherited.bdf, std::move(fd));
  if (!device) {
    spdlog::warn("restart: container {}: device {} not taken over: {}", id_, inherited.bdf,
                 device.error().message());
    return;
  }
  Hold(inherited.bdf, *device);
}

std::shared_ptr<const dma::Backing> ManagedContainer::ReopenBar(const BarSource& bar) {
  auto device = DeviceFor(bar.bdf);
  auto backing = device ? dma::CreateBarBacking(*device, bar.index)
                        : Result<dma::Backing>(std::unexpected(device.error()));
  if (!backing) {
    spdlog::warn("restart: container {}: BAR {} of {}: {}", id_, bar.index, bar.bdf,
                 backing.error().message());
    return nullptr;
  }
  return std::make_shared<const dma::Backing>(std::move(*backing));
}

Result<uint64_t> ManagedContainer::HandOver() {
  if (closed_ || !state_->space) {
    return Fail(ENOENT, "hand over container", "the container is closed");
  }
  State& s = *state_;
  const uint64_t invalidated = VFIOD_TRY(s.space->InvalidateAll());
  VFIOD_TRY(s.space->Abandon());
  closed_ = true;
  {
    std::lock_guard lock(info_mu_);
    usage_ = {};
  }
  s.requests.clear();   // the successor arms the devices again
  s.bar_views.clear();  // our views of BARs: the successor maps its own
  s.devices.clear();    // vfiod's own device fds: the store keeps copies
  ForgetHeld();
  s.space.reset();
  // Closing our copies detaches nothing: the store's copies keep the files.
  for (auto& group : s.groups) {
    const kernel::KernelFd ours(&group->kernel(), group->Relinquish());
  }
  s.groups.clear();
  const kernel::KernelFd ours(&s.container->kernel(), s.container->Relinquish());
  s.container.reset();
  return invalidated;
}

}  // namespace vfiod::service
