#include "vfio/group.h"

#include <fcntl.h>

#include <cerrno>
#include <cstdio>

namespace vfiod::vfio {

std::string NonViableGroupDetail(int number, const PciSysfs* sysfs) {
  std::string detail = "group " + std::to_string(number) + " is not viable";
  if (sysfs == nullptr) {
    return detail + ": some member is bound to a driver that owns DMA";
  }
  std::string blockers;
  for (const GroupMember& m : sysfs->GroupMembers(number)) {
    if (!m.allows_vfio()) {
      blockers += (blockers.empty() ? "" : ", ") + m.name + " (" + m.driver + ")";
    }
  }
  if (blockers.empty()) {
    return detail + " (sysfs shows no blocking member; a driver may be binding right now)";
  }
  return detail + ": " + blockers +
         " bound to drivers that own DMA; bind them to vfio-pci or unbind them";
}

Result<std::shared_ptr<Group>> Group::Open(kernel::Kernel& kernel, int number,
                                           const PciSysfs* sysfs, const std::string& dev_dir) {
  if (number < 0) {
    return Fail(EINVAL, "open VFIO group", "negative group number");
  }
  std::string path = dev_dir + "/" + std::to_string(number);
  auto raw = kernel.open(path, O_RDWR);
  if (!raw) {
    Error e = raw.error();
    e.op = "open " + path;
    if (e.code == ENOENT) {
      e.detail = "no VFIO group " + std::to_string(number) + "; is the device bound to vfio-pci?";
    }
    return std::unexpected(std::move(e));
  }
  std::shared_ptr<Group> group(new Group(kernel, number, kernel::KernelFd(&kernel, *raw)));
  kernel::GroupStatus status = VFIOD_TRY(group->Status());
  if (!status.viable) {
    return Fail(EPERM, "open VFIO group " + std::to_string(number),
                NonViableGroupDetail(number, sysfs));
  }
  return group;
}

Result<std::shared_ptr<Group>> Group::Adopt(kernel::Kernel& kernel, int number, kernel::KernelFd fd,
                                            std::shared_ptr<Container> container) {
  constexpr const char* kOp = "adopt VFIO group";
  if (!fd.valid() || !container || number < 0) {
    return Fail(EINVAL, kOp, "needs a group fd, its number and its container");
  }
  std::shared_ptr<Group> group(new Group(kernel, number, std::move(fd)));
  kernel::GroupStatus status = VFIOD_TRY(group->Status());
  if (!status.viable) {
    return Fail(EPERM, kOp, "group " + std::to_string(number) + " is not viable");
  }
  if (!status.container_set) {
    return Fail(EINVAL, kOp, "group " + std::to_string(number) + " is not attached");
  }
  container->OnGroupAdopted();
  group->container_ = std::move(container);
  return group;
}

// Only std::bad_alloc, from building an error's text, can escape Detach():
// out of memory ends vfiod wherever it happens.
// NOLINTNEXTLINE(bugprone-exception-escape)
Group::~Group() {
  if (container_) {
    auto detached = Detach();
    // EBUSY: a device fd (handed to a client) is still open. It holds the
    // group file, so the kernel detaches the group when that fd closes: not
    // an error. Anything else is, and a destructor cannot return it.
    if (!detached && detached.error().code != EBUSY) {
      (void)std::fprintf(stderr, "vfiod: detaching group %d: %s\n", number_,
                         detached.error().message().c_str());
    }
  }
}

Result<kernel::GroupStatus> Group::Status() const { return kernel::GetGroupStatus(*kernel_, fd()); }

Result<void> Group::Attach(std::shared_ptr<Container> container) {
  if (!container) {
    return Fail(EINVAL, "VFIO_GROUP_SET_CONTAINER", "no container");
  }
  if (container_) {
    return Fail(EBUSY, "VFIO_GROUP_SET_CONTAINER",
                "group " + std::to_string(number_) + " is already attached");
  }
  VFIOD_TRY(kernel::SetContainer(*kernel_, fd(), container->fd()));
  auto iommu = container->OnGroupAttached();
  if (!iommu) {
    // Undo; the SET_IOMMU (or probe) error is the one to report.
    (void)kernel::UnsetContainer(*kernel_, fd());
    container->OnGroupDetached();
    return iommu;
  }
  container_ = std::move(container);
  return Ok();
}

Result<void> Group::Detach() {
  if (!container_) {
    return Fail(EINVAL, "VFIO_GROUP_UNSET_CONTAINER",
                "group " + std::to_string(number_) + " is not attached");
  }
  VFIOD_TRY(kernel::UnsetContainer(*kernel_, fd()));
  container_->OnGroupDetached();
  container_.reset();
  return Ok();
}

}  // namespace vfiod::vfio
