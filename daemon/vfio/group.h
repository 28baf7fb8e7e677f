// A VFIO group (/dev/vfio/N): the unit of isolation the IOMMU can tell apart.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "kernel/kernel.h"
#include "kernel/vfio_api.h"
#include "proto/result.h"
#include "vfio/container.h"
#include "vfio/pci_sysfs.h"

namespace vfiod::vfio {

/// Owns a group fd and, once attached, a share of its container. Devices opened
/// from the group hold a shared_ptr to it, so the group outlives them: the
/// kernel refuses to detach a group with open devices (EBUSY). Not movable.
class Group {
 public:
  /// Opens <dev_dir>/<number> and checks VFIO_GROUP_GET_STATUS. A group that is
  /// not viable is refused with EPERM and a detail naming every member that
  /// blocks it and its driver (read from `sysfs` when given).
  /// ENOENT: no such group (is the device bound to vfio-pci?); EBUSY: the group
  /// is open elsewhere; EACCES: no permission on the group node.
  [[nodiscard]] static Result<std::shared_ptr<Group>> Open(
      kernel::Kernel& kernel, int number, const PciSysfs* sysfs = nullptr,
      const std::string& dev_dir = "/dev/vfio");

  /// Takes over group `number`'s fd a previous vfiod left attached to
  /// `container` (live restart; the container adopted with Container::Adopt).
  /// Checks VFIO_GROUP_GET_STATUS; the group counts as attached, so closing
  /// it detaches as usual. EINVAL: no fd, no container, negative number, or the
  /// group is not attached to a container (it then is not this one's);
  /// EPERM: not viable; errno of GET_STATUS.
  [[nodiscard]] static Result<std::shared_ptr<Group>> Adopt(kernel::Kernel& kernel, int number,
                                                            kernel::KernelFd fd,
                                                            std::shared_ptr<Container> container);
  Group(const Group&) = delete;
  Group& operator=(const Group&) = delete;
  /// Detaches from the container (if attached), then closes the group fd.
  /// While a device fd of the group is open (EBUSY) the fd just closes: the
  /// device fd holds the group file, and the kernel detaches it when that
  /// closes. Any other failure to detach is printed to stderr.
  ~Group();

  [[nodiscard]] int number() const { return number_; }
  [[nodiscard]] int fd() const { return fd_.get(); }
  [[nodiscard]] kernel::Kernel& kernel() const { return *kernel_; }
  [[nodiscard]] const std::shared_ptr<Container>& container() const { return container_; }

  /// VFIO_GROUP_GET_STATUS.
  [[nodiscard]] Result<kernel::GroupStatus> Status() const;
  /// VFIO_GROUP_SET_CONTAINER, then VFIO_SET_IOMMU when this is the container's
  /// first group. EBUSY: already attached; EPERM: not viable; EINVAL: bad container.
  [[nodiscard]] Result<void> Attach(std::shared_ptr<Container> container);
  /// VFIO_GROUP_UNSET_CONTAINER. EBUSY while devices of the group are open;
  /// EINVAL when not attached.
  [[nodiscard]] Result<void> Detach();
  /// Gives the fd up without detaching or closing it (see
  /// Container::Relinquish). Returns the fd, now the caller's (-1 if none).
  [[nodiscard]] int Relinquish() {
    container_.reset();
    return fd_.release();
  }

 private:
  Group(kernel::Kernel& kernel, int number, kernel::KernelFd fd)
      : kernel_(&kernel), number_(number), fd_(std::move(fd)) {}

  kernel::Kernel* kernel_;
  int number_;
  // Teardown order: the destructor detaches first (while both fds are open),
  // then fd_ closes, then container_ is released. Members are destroyed in
  // reverse order, so container_ is declared before fd_: the container fd can
  // only close after this group no longer refers to it.
  std::shared_ptr<Container> container_;
  kernel::KernelFd fd_;
};

/// "group 9 is not viable: 0000:00:1f.0 (lpc_ich), 0000:00:1f.2 (ahci) are
/// bound to drivers that own DMA; bind them to vfio-pci or unbind them".
[[nodiscard]] std::string NonViableGroupDetail(int number, const PciSysfs* sysfs);

}  // namespace vfiod::vfio
