#include "vfio/container.h"

#include <fcntl.h>

namespace vfiod::vfio {

Result<std::shared_ptr<Container>> Container::Open(kernel::Kernel& kernel,
                                                   const std::string& path) {
  int raw = VFIOD_TRY(kernel.open(path, O_RDWR));
  std::shared_ptr<Container> c(new Container(kernel, kernel::KernelFd(&kernel, raw)));
  int version = VFIOD_TRY(kernel::GetApiVersion(kernel, c->fd()));
  if (version != kernel::kVfioApiVersion) {
    return Fail(EPROTO, "VFIO_GET_API_VERSION",
                "kernel reports API version " + std::to_string(version) + ", vfiod speaks " +
                    std::to_string(kernel::kVfioApiVersion));
  }
  c->features_ = VFIOD_TRY(c->ProbeFeatures());
  if (!c->features_.type1v2) {
    return Fail(ENOTSUP, "VFIO_CHECK_EXTENSION", "the kernel has no VFIO_TYPE1v2_IOMMU");
  }
  return c;
}

Result<std::shared_ptr<Container>> Container::Adopt(kernel::Kernel& kernel, kernel::KernelFd fd) {
  constexpr const char* kOp = "adopt VFIO container";
  if (!fd.valid()) {
    return Fail(EBADF, kOp, "no fd");
  }
  std::shared_ptr<Container> c(new Container(kernel, std::move(fd)));
  int version = VFIOD_TRY(kernel::GetApiVersion(kernel, c->fd()));
  if (version != kernel::kVfioApiVersion) {
    return Fail(EPROTO, kOp, "kernel reports API version " + std::to_string(version));
  }
  // GET_INFO answers only once an IOMMU is set: the test that groups remain.
  auto info = kernel::GetIommuInfo(kernel, c->fd());
  if (!info) {
    return Fail(EINVAL, kOp, "no IOMMU is set (no group attached): " + info.error().message());
  }
  c->features_ = VFIOD_TRY(c->ProbeFeatures());
  if (!c->features_.type1v2) {
    return Fail(ENOTSUP, kOp, "the kernel has no VFIO_TYPE1v2_IOMMU");
  }
  c->iommu_set_ = true;
  return c;
}

Result<ContainerFeatures> Container::ProbeFeatures() const {
  ContainerFeatures f;
  f.type1v2 = VFIOD_TRY(kernel::CheckExtension(*kernel_, fd(), kernel::Extension::kType1v2));
  f.unmap_all = VFIOD_TRY(kernel::CheckExtension(*kernel_, fd(), kernel::Extension::kUnmapAll));
  f.update_vaddr =
      VFIOD_TRY(kernel::CheckExtension(*kernel_, fd(), kernel::Extension::kUpdateVaddr));
  f.mmio_no_pin = VFIOD_TRY(kernel::CheckExtension(*kernel_, fd(), kernel::Extension::kMmioNoPin));
  return f;
}

Result<void> Container::OnGroupAttached() {
  ++attached_groups_;
  if (iommu_set_) {
    return Ok();
  }
  VFIOD_TRY(kernel::SetIommuType1v2(*kernel_, fd()));
  // Features first, then the flag: a thread that sees iommu_set_ sees them too.
  features_ = VFIOD_TRY(ProbeFeatures());
  iommu_set_ = true;
  return Ok();
}

void Container::OnGroupDetached() {
  if (--attached_groups_ == 0) {
    iommu_set_ = false;  // the kernel drops the IOMMU (and every mapping) with the last group
  }
}

Result<void> Container::RequireIommu(const char* op) const {
  if (!iommu_set_) {
    return Fail(EINVAL, op, "no group is attached to the container yet");
  }
  return Ok();
}

Result<kernel::IommuInfo> Container::IommuInfo() const {
  VFIOD_TRY(RequireIommu("VFIO_IOMMU_GET_INFO"));
  return kernel::GetIommuInfo(*kernel_, fd());
}

Result<void> Container::Map(const kernel::DmaMap& map) const {
  VFIOD_TRY(RequireIommu("VFIO_IOMMU_MAP_DMA"));
  return kernel::MapDma(*kernel_, fd(), map);
}

Result<uint64_t> Container::Unmap(uint64_t iova, uint64_t size) const {
  VFIOD_TRY(RequireIommu("VFIO_IOMMU_UNMAP_DMA"));
  return kernel::UnmapDma(*kernel_, fd(), iova, size);
}

Result<uint64_t> Container::UnmapAll() const {
  VFIOD_TRY(RequireIommu("VFIO_IOMMU_UNMAP_DMA"));
  if (!features_.unmap_all) {
    return Fail(ENOTSUP, "VFIO_IOMMU_UNMAP_DMA", "the kernel lacks VFIO_UNMAP_ALL");
  }
  return kernel::UnmapAllDma(*kernel_, fd());
}

Result<void> Container::RequireUpdateVaddr(const char* op) const {
  VFIOD_TRY(RequireIommu(op));
  if (!features_.update_vaddr) {
    return Fail(ENOTSUP, op, "the kernel lacks VFIO_UPDATE_VADDR");
  }
  return Ok();
}

Result<uint64_t> Container::InvalidateVaddr(uint64_t iova, uint64_t size) const {
  VFIOD_TRY(RequireUpdateVaddr("VFIO_IOMMU_UNMAP_DMA(FLAG_VADDR)"));
  return kernel::InvalidateVaddr(*kernel_, fd(), iova, size);
}

Result<void> Container::UpdateVaddr(uint64_t vaddr, uint64_t iova, uint64_t size) const {
  VFIOD_TRY(RequireUpdateVaddr("VFIO_IOMMU_MAP_DMA(FLAG_VADDR)"));
  return kernel::UpdateVaddr(*kernel_, fd(), vaddr, iova, size);
}

}  // namespace vfiod::vfio
