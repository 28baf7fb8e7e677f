// A VFIO container (/dev/vfio/vfio): one IOMMU address space shared by the
// groups attached to it. Thin typed calls; the user-space shadow of the
// mappings lives in the DMA engine above this layer.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include "kernel/kernel.h"
#include "kernel/vfio_api.h"
#include "proto/result.h"

namespace vfiod::vfio {

/// What VFIO_CHECK_EXTENSION reported. UPDATE_VADDR is only reported once an
/// IOMMU is set, so the features are probed again after SetIommu().
struct ContainerFeatures {
  bool type1v2 = false;
  bool unmap_all = false;
  bool update_vaddr = false;
  bool mmio_no_pin = false;
};

/// Owns a container fd. Shared by the groups attached to it (they hold a
/// shared_ptr), so it outlives them; not movable for that reason. Attach and
/// detach happen on one thread at a time (the session's); Map/Unmap are plain
/// ioctls and may be issued from several threads.
class Container {
 public:
  /// Opens `path`, checks the API version and that TYPE1v2 is supported.
  /// ENOENT/EACCES from open; EPROTO: unknown API version; ENOTSUP: no TYPE1v2.
  [[nodiscard]] static Result<std::shared_ptr<Container>> Open(
      kernel::Kernel& kernel, const std::string& path = "/dev/vfio/vfio");

  /// Takes over a container fd a previous vfiod left (live restart): checks
  /// the API version and that its type1v2 IOMMU is set (a group is still
  /// attached: the groups come back with Group::Adopt), and probes the
  /// features. Nothing of its mappings is touched.
  /// EPROTO: unknown API version; ENOTSUP: no TYPE1v2; EINVAL: no IOMMU is set
  /// (not a container, or its last group is gone with its mappings); errno of
  /// the ioctls (EBADF, ENOTTY: not a VFIO container).
  [[nodiscard]] static Result<std::shared_ptr<Container>> Adopt(kernel::Kernel& kernel,
                                                                kernel::KernelFd fd);
  Container(const Container&) = delete;
  Container& operator=(const Container&) = delete;
  ~Container() = default;

  [[nodiscard]] const ContainerFeatures& features() const { return features_; }
  /// True once the first group is attached and the type1v2 IOMMU is set.
  [[nodiscard]] bool iommu_set() const { return iommu_set_; }
  [[nodiscard]] int attached_groups() const { return attached_groups_; }

  /// VFIO_IOMMU_GET_INFO. EINVAL before the IOMMU is set.
  [[nodiscard]] Result<kernel::IommuInfo> IommuInfo() const;
  /// VFIO_IOMMU_MAP_DMA; errno cases of kernel::MapDma. EINVAL before the IOMMU is set.
  [[nodiscard]] Result<void> Map(const kernel::DmaMap& map) const;
  /// VFIO_IOMMU_UNMAP_DMA; returns the bytes unmapped (0 when nothing was there).
  /// EINVAL: splits a mapping, misaligned, or no IOMMU set.
  [[nodiscard]] Result<uint64_t> Unmap(uint64_t iova, uint64_t size) const;
  /// Unmaps everything; returns the bytes unmapped. ENOTSUP without UNMAP_ALL.
  [[nodiscard]] Result<uint64_t> UnmapAll() const;
  /// Live-restart step 1: the entries inside [iova, iova + size) lose their
  /// process address but stay mapped and pinned (kernel::InvalidateVaddr).
  /// Returns the bytes invalidated. ENOTSUP without VFIO_UPDATE_VADDR;
  /// EINVAL: no IOMMU set, an entry is invalidated already (none changes), or
  /// the range would split an entry.
  [[nodiscard]] Result<uint64_t> InvalidateVaddr(uint64_t iova, uint64_t size) const;
  /// Live-restart step 2: the invalidated entry at exactly [iova, iova + size)
  /// takes `vaddr` of this process, which must map the same pages
  /// (kernel::UpdateVaddr). ENOTSUP without VFIO_UPDATE_VADDR; ENOENT: no
  /// entry there; EINVAL: no IOMMU set, or the entry is not invalidated or
  /// not exactly this range; ENOMEM: newer kernels move the entry's
  /// locked-memory charge to this process and its RLIMIT_MEMLOCK is full.
  [[nodiscard]] Result<void> UpdateVaddr(uint64_t vaddr, uint64_t iova, uint64_t size) const;

  [[nodiscard]] kernel::Kernel& kernel() const { return *kernel_; }
  [[nodiscard]] int fd() const { return fd_.get(); }
  /// Gives the fd up without closing it (a crash in a test, a graceful
  /// hand-over): the kernel keeps the container, its IOMMU and its mappings
  /// for whoever holds another copy of the fd. The object is unusable after.
  /// Returns the fd, now the caller's (-1 when already given up).
  [[nodiscard]] int Relinquish() {
    iommu_set_ = false;
    return fd_.release();
  }

 private:
  friend class Group;  // attach/detach bookkeeping
  Container(kernel::Kernel& kernel, kernel::KernelFd fd) : kernel_(&kernel), fd_(std::move(fd)) {}

  [[nodiscard]] Result<ContainerFeatures> ProbeFeatures() const;
  /// Called by Group after VFIO_GROUP_SET_CONTAINER: counts the group and sets
  /// the IOMMU for the first one. On failure the group is still counted: the
  /// caller unsets the container and calls OnGroupDetached().
  [[nodiscard]] Result<void> OnGroupAttached();
  /// Called by Group after VFIO_GROUP_UNSET_CONTAINER: the last group takes the IOMMU with it.
  void OnGroupDetached();
  /// Called by Group::Adopt: a group already attached in the kernel is counted.
  void OnGroupAdopted() { ++attached_groups_; }
  [[nodiscard]] Result<void> RequireIommu(const char* op) const;
  /// RequireIommu(), and ENOTSUP when the kernel lacks VFIO_UPDATE_VADDR.
  [[nodiscard]] Result<void> RequireUpdateVaddr(const char* op) const;

  kernel::Kernel* kernel_;
  kernel::KernelFd fd_;
  // Written only by the attaching/detaching thread; features_ before
  // iommu_set_ (release), so a Map/Unmap thread that sees the flag set also
  // sees the features it implies.
  ContainerFeatures features_;
  std::atomic<bool> iommu_set_ = false;
  std::atomic<int> attached_groups_ = 0;
};

}  // namespace vfiod::vfio
