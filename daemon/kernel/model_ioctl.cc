// ModelKernel: ioctl dispatch, and the container and group ioctls of the VFIO
// core (Linux 6.1 container.c and vfio_main.c).
#include <fcntl.h>
#include <linux/vfio.h>
#include <sys/ioctl.h>

#include <cerrno>
#include <cstring>

#include "kernel/ioctl_names.h"
#include "kernel/model_kernel.h"
#include "kernel/model_state.h"

namespace vfiod::kernel {
namespace {

constexpr size_t kMaxNameLen = 4096;  // strndup_user(arg, PAGE_SIZE)

Result<int> ContainerIoctl(ModelState& s, ModelContainer& c, unsigned long request,
                           unsigned long arg) {
  switch (request) {
    case VFIO_GET_API_VERSION:
      return VFIO_API_VERSION;
    case VFIO_CHECK_EXTENSION:
      return ModelIommu::CheckExtension(c.iommu ? &*c.iommu : nullptr, arg);
    case VFIO_SET_IOMMU:
      if (c.groups.empty() || c.iommu) {
        return Fail(EINVAL, "VFIO_SET_IOMMU", c.iommu ? "an IOMMU is already set" : "no group");
      }
      if (arg != VFIO_TYPE1v2_IOMMU) {  // the model implements v2 semantics only
        return Fail(ENODEV, "VFIO_SET_IOMMU", "no IOMMU driver for this type");
      }
      c.iommu.emplace(s.knobs, s);
      return 0;
    default:
      if (!c.iommu) {
        return Fail(EINVAL, IoctlName(request), "container has no IOMMU set");
      }
      return c.iommu->Ioctl(request, arg);
  }
}

Result<int> GetStatus(ModelGroupState& g, void* arg) {
  vfio_group_status st{};
  std::memcpy(&st, arg, sizeof st);
  if (st.argsz < sizeof st) {
    return Fail(EINVAL, "VFIO_GROUP_GET_STATUS", "argsz too small");
  }
  st.flags = 0;
  if (g.container) {
    st.flags = VFIO_GROUP_FLAGS_CONTAINER_SET | VFIO_GROUP_FLAGS_VIABLE;
  } else if (g.Viable()) {
    st.flags = VFIO_GROUP_FLAGS_VIABLE;
  }
  std::memcpy(arg, &st, sizeof st);
  return 0;
}

Result<int> SetContainer(ModelState& s, ModelGroupState& g, const void* arg) {
  constexpr const char* kOp = "VFIO_GROUP_SET_CONTAINER";
  int fd = -1;
  std::memcpy(&fd, arg, sizeof fd);
  auto it = s.fds.find(fd);
  if (it == s.fds.end() && ::fcntl(fd, F_GETFD) < 0) {
    return Fail(EBADF, kOp, "not an open fd");
  }
  if (g.container) {
    return Fail(EINVAL, kOp, "group already has a container");
  }
  auto* c = it == s.fds.end() ? nullptr : std::get_if<std::shared_ptr<ModelContainer>>(&it->second);
  if (c == nullptr) {
    return Fail(EINVAL, kOp, "fd is not a VFIO container");
  }
  if (!g.Viable()) {
    return Fail(EPERM, kOp, "group is not viable (a device is bound to a host driver)");
  }
  g.container = *c;
  (*c)->groups.push_back(&g);
  return 0;
}

Result<int> GetDeviceFd(ModelState& s, ModelGroupState& g, const char* arg) {
  constexpr const char* kOp = "VFIO_GROUP_GET_DEVICE_FD";
  size_t len = ::strnlen(arg, kMaxNameLen);
  if (len == kMaxNameLen) {
    return Fail(EINVAL, kOp, "device name too long");
  }
  std::string_view name(arg, len);
  // Only devices bound to vfio-pci are in the group's device list.
  ModelPciFunction* function = g.VfioDevice(name);
  if (function == nullptr) {
    return Fail(ENODEV, kOp, "no VFIO device of that name in the group");
  }
  if (!g.container || !g.container->iommu) {
    return Fail(EINVAL, kOp, "group has no container with an IOMMU");
  }
  const uint64_t mark = s.next_mark++;
  int fd = VFIOD_TRY(function->NewFd(mark));
  function->Opened();
  ++g.open_devices;
  s.fds.emplace(fd, ModelDeviceFd{&g, function, mark});
  return fd;
}

Result<int> GroupIoctl(ModelState& s, ModelGroupState& g, unsigned long request,
                       unsigned long arg) {
  // The ioctl ABI passes the argument as an integer that holds an address.
  void* p = reinterpret_cast<void*>(arg);  // NOLINT(performance-no-int-to-ptr)
  switch (request) {
    case VFIO_GROUP_GET_STATUS:
      return GetStatus(g, p);
    case VFIO_GROUP_SET_CONTAINER:
      return SetContainer(s, g, p);
    case VFIO_GROUP_UNSET_CONTAINER:
      ReapHeldDevices(s);
      if (!g.container) {
        return Fail(EINVAL, "VFIO_GROUP_UNSET_CONTAINER", "group has no container");
      }
      if (g.open_devices > 0) {
        return Fail(EBUSY, "VFIO_GROUP_UNSET_CONTAINER", "device fds are open");
      }
      DetachGroup(g);
      return 0;
    case VFIO_GROUP_GET_DEVICE_FD:
      return GetDeviceFd(s, g, static_cast<const char*>(p));
    default:
      return Fail(ENOTTY, IoctlName(request), "not a group ioctl");
  }
}

}  // namespace

Result<int> ModelKernel::ioctl(int fd, unsigned long request, void* arg) {
  return Dispatch(fd, request, reinterpret_cast<unsigned long>(arg));
}

Result<int> ModelKernel::ioctl_value(int fd, unsigned long request, unsigned long value) {
  return Dispatch(fd, request, value);
}

Result<int> ModelKernel::Dispatch(int fd, unsigned long request, unsigned long arg) {
  std::lock_guard lock(mu_);
  ++ioctl_counts_[request];
  auto it = state_->fds.find(fd);
  if (it == state_->fds.end()) {  // not ours: the real kernel answers (EBADF, ENOTTY...)
    int ret = ::ioctl(fd, request, arg);
    return ret < 0 ? ErrnoError(IoctlName(request)) : Result<int>(ret);
  }
  ModelState& s = *state_;
  Result<int> r = std::visit(
      [&](auto& obj) -> Result<int> {
        using T = std::decay_t<decltype(obj)>;
        if constexpr (std::is_same_v<T, std::shared_ptr<ModelContainer>>) {
          return ContainerIoctl(s, *obj, request, arg);
        } else if constexpr (std::is_same_v<T, ModelGroupState*>) {
          return GroupIoctl(s, *obj, request, arg);
        } else {
          // The ioctl ABI passes the argument as an integer that holds an address.
          void* p = reinterpret_cast<void*>(arg);  // NOLINT(performance-no-int-to-ptr)
          if (request == VFIO_DEVICE_GET_PCI_HOT_RESET_INFO) {
            return HotResetInfo(s, obj, p);
          }
          if (request == VFIO_DEVICE_PCI_HOT_RESET) {
            return HotReset(s, obj, p);
          }
          return obj.function->Ioctl(request, arg);
        }
      },
      it->second);
  if (!r) {
    r.error().op = IoctlName(request);  // one naming scheme, as LinuxKernel
  }
  return r;
}

}  // namespace vfiod::kernel
