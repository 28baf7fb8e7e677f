// ManagedContainer's device fds: vfiod opens each device once per container
// (DeviceFor), arms its request IRQ, tells the keeper (the fd store, so a
// restarted vfiod takes the fd over instead of opening the device again),
// and hands clients dups of it.
#include <fcntl.h>
#include <spdlog/spdlog.h>

#include <cerrno>
#include <cstring>

#include "service/managed_container.h"
#include "service/managed_container_state.h"
#include "vfio/device.h"
#include "vfio/group.h"

namespace vfiod::service {

Result<std::shared_ptr<vfio::Device>> ManagedContainer::DeviceFor(const std::string& bdf) {
  if (auto it = state_->devices.find(bdf); it != state_->devices.end()) {
    return it->second;
  }
  Error last{ENODEV, "device", bdf + " is in none of the container's groups"};
  for (const auto& group : state_->groups) {
    auto device = vfio::Device::Open(group, bdf);
    if (device) {
      Hold(bdf, *device);
      if (device_keeper_) {
        device_keeper_(bdf, (*device)->fd());
      }
      ArmRequest(bdf, *device);
      return *device;
    }
    if (device.error().code != EINVAL) {
      last = device.error();
    }
  }
  return std::unexpected(last);
}

void ManagedContainer::Hold(const std::string& bdf, const std::shared_ptr<vfio::Device>& device) {
  state_->devices[bdf] = device;
  std::lock_guard lock(info_mu_);
  held_.push_back(HeldDevice{bdf, device->group()->number()});
}

std::vector<ManagedContainer::HeldDevice> ManagedContainer::held_devices() const {
  std::lock_guard lock(info_mu_);
  return held_;
}

void ManagedContainer::ForgetHeld() {
  std::lock_guard lock(info_mu_);
  held_.clear();
}

void ManagedContainer::SetDeviceKeeper(DeviceKeeper keeper) { device_keeper_ = std::move(keeper); }

void ManagedContainer::SetRequestSink(RequestSink sink) {
  request_sink_ = std::move(sink);
  for (const auto& [bdf, device] : state_->devices) {
    if (!state_->requests.contains(bdf)) {
      ArmRequest(bdf, device);
    }
  }
}

void ManagedContainer::ArmRequest(const std::string& bdf,
                                  const std::shared_ptr<vfio::Device>& device) {
  if (!request_sink_ || state_->requests.contains(bdf)) {
    return;  // armed by SetRequestSink, or already (re-arming would unset it)
  }
  // A device taken over from a vfiod that died still has that process's
  // eventfd as its trigger: setting ours replaces it (vfio-pci keeps one).
  auto irq = vfio::IrqSet::Enable(device, kernel::kPciReqIrqIndex, 1);
  if (!irq) {
    spdlog::warn("container {}: {}: the kernel's requests to release it will go unheard: {}", id_,
                 bdf, irq.error().message());
    return;
  }
  UniqueFd copy(::fcntl(irq->eventfd(0), F_DUPFD_CLOEXEC, 0));
  if (!copy) {
    spdlog::warn("container {}: {}: dup of the request eventfd: {}", id_, bdf,
                 std::strerror(errno));
    return;  // `irq` disables the index as it goes
  }
  state_->requests.insert_or_assign(bdf, std::move(*irq));
  request_sink_(bdf, std::move(copy));
}

Result<OpenedDevice> ManagedContainer::OpenDevice(const std::string& bdf, int group, uid_t uid) {
  auto device = VFIOD_TRY(DeviceFor(bdf));
  UniqueFd copy(::fcntl(device->fd(), F_DUPFD_CLOEXEC, 0));
  if (!copy) {
    return ErrnoError("dup");
  }
  OpenedDevice opened{bdf, std::move(copy), device->info()};
  handouts_[group].insert(uid);
  return opened;
}

bool ManagedContainer::HasDeviceOpen(const std::string& bdf) const {
  return state_->devices.contains(bdf);
}

std::vector<std::string> ManagedContainer::OpenDevices() const {
  std::vector<std::string> out;
  for (const auto& [bdf, device] : state_->devices) {
    out.push_back(bdf);
  }
  return out;
}

}  // namespace vfiod::service
