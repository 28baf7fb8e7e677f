// ModelKernel: fd table, open/close, the container and group ioctls, and the
// process model (mapped memory, memlock accounting, device mmaps).
#include "kernel/model_kernel.h"

#include <fcntl.h>
#include <linux/vfio.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "kernel/ioctl_names.h"
#include "kernel/model_state.h"
#include "proto/unique_fd.h"

namespace vfiod::kernel {
namespace {

constexpr std::string_view kVfioDir = "/dev/vfio/";

[[noreturn]] void Die(const std::string& why) {
  (void)std::fprintf(stderr, "vfiod: ModelKernel: %s\n", why.c_str());  // aborting either way
  std::abort();
}

Result<int> NewMemfd(const std::string& name, const std::string& op) {
  int fd = ::memfd_create(name.c_str(), MFD_CLOEXEC);
  if (fd < 0) {
    return ErrnoError(op);
  }
  return fd;
}

std::optional<int> ParseGroupNumber(std::string_view rest) {
  int n = -1;
  auto [end, ec] = std::from_chars(rest.data(), rest.data() + rest.size(), n);
  if (ec != std::errc() || end != rest.data() + rest.size() || n < 0) {
    return std::nullopt;
  }
  return n;
}

}  // namespace

void ReleaseDevice(const ModelDeviceFd& d) {
  d.function->Closed();
  if (--d.group->open_devices == 0 && !d.group->fd_open) {
    DetachGroup(*d.group);
  }
}

void ReapHeldDevices(ModelState& s) {
  std::erase_if(s.held_devices, [](const ModelDeviceFd& d) {
    if (d.function->StillReferenced(d.mark)) {
      return false;
    }
    ReleaseDevice(d);
    return true;
  });
}

void DetachGroup(ModelGroupState& g) {
  std::shared_ptr<ModelContainer> c = std::move(g.container);
  if (!c) {
    return;
  }
  std::erase(c->groups, &g);
  if (c->groups.empty()) {
    c->iommu.reset();  // the last group leaving deprivileges the container
  }
}

// --- construction -------------------------------------------------------------

ModelKernel::ModelKernel(ModelTopology topology, const ModelKnobs& knobs)
    : topology_(std::move(topology)), state_(std::make_unique<ModelState>(knobs)) {
  if (knobs.iova_pgsizes == 0 || (knobs.iova_pgsizes & -knobs.iova_pgsizes) < 4096) {
    Die("iova_pgsizes must include a page size of at least 4 KiB");
  }
  for (const ModelGroup& g : topology_.groups) {
    auto gs = std::make_unique<ModelGroupState>();
    gs->topo = &g;
    for (const ModelDevice& d : g.devices) {
      auto f = ModelPciFunction::Create(d);
      if (!f) {
        Die(f.error().message());
      }
      gs->members.push_back(ModelMember{f->get(), d.driver});
      state_->functions.push_back(std::move(*f));
    }
    state_->groups.push_back(std::move(gs));
  }
}

ModelKernel::~ModelKernel() {
  // The model must outlive the fds it handed out; close what is left.
  for (auto& [fd, obj] : state_->fds) {
    UniqueFd::CloseOrDie(fd);
  }
  state_->fds.clear();
  for (auto& g : state_->groups) {
    DetachGroup(*g);
  }
}

// --- open / close ---------------------------------------------------------------

Result<int> ModelKernel::open(const std::string& path, int flags) {
  std::string_view p = path;
  if (!p.starts_with(kVfioDir)) {
    int fd = ::open(path.c_str(), flags | O_CLOEXEC);
    return fd < 0 ? ErrnoError("open " + path) : Result<int>(fd);
  }
  std::lock_guard lock(mu_);
  std::string op = "open " + path;
  std::string_view rest = p.substr(kVfioDir.size());
  if (rest == "vfio") {
    int fd = VFIOD_TRY(NewMemfd("vfio-container", op));
    state_->fds.emplace(fd, std::make_shared<ModelContainer>());
    return fd;
  }
  std::optional<int> number = ParseGroupNumber(rest);
  ReapHeldDevices(*state_);  // a client's copy of a device fd may have closed
  for (auto& g : state_->groups) {
    if (number && g->topo->id == *number) {
      if (g->fd_open || g->open_devices > 0) {
        return Fail(EBUSY, op, "group is already open");
      }
      if (!g->Registered()) {  // vfio removes the group's cdev with its last device
        return Fail(ENOENT, op, "no device of the group is bound to vfio-pci");
      }
      int fd = VFIOD_TRY(NewMemfd("vfio-group-" + std::string(rest), op));
      g->fd_open = true;
      state_->fds.emplace(fd, g.get());
      return fd;
    }
  }
  return Fail(ENOENT, op, "no such VFIO group");
}

void ModelKernel::close(int fd) {
  std::lock_guard lock(mu_);
  auto it = state_->fds.find(fd);
  if (it != state_->fds.end()) {
    // Handled in place and erased last (nothing here touches the fd table).
    ModelObject& obj = it->second;
    if (auto* g = std::get_if<ModelGroupState*>(&obj)) {
      (*g)->fd_open = false;
      if ((*g)->open_devices == 0) {
        DetachGroup(**g);
      }
    } else if (auto* d = std::get_if<ModelDeviceFd>(&obj)) {
      const ModelDeviceFd device = *d;
      state_->fds.erase(it);
      UniqueFd::CloseOrDie(fd);
      if (device.function->StillReferenced(device.mark)) {
        state_->held_devices.push_back(device);  // a copy lives on elsewhere
      } else {
        ReleaseDevice(device);
      }
      return;
    }
    // A container fd: dropping the table's reference is all; attached
    // groups keep the container (and its IOMMU) alive.
    state_->fds.erase(it);
  }
  UniqueFd::CloseOrDie(fd);
}

}  // namespace vfiod::kernel
