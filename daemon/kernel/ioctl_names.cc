#include "kernel/ioctl_names.h"

#include <linux/vfio.h>

#include <array>
#include <string>
#include <utility>

#include "proto/hex.h"

namespace vfiod::kernel {
namespace {

struct Named {
  unsigned long request;
  std::string_view name;
};

constexpr std::array kNames = {
    Named{VFIO_GET_API_VERSION, "VFIO_GET_API_VERSION"},
    Named{VFIO_CHECK_EXTENSION, "VFIO_CHECK_EXTENSION"},
    Named{VFIO_SET_IOMMU, "VFIO_SET_IOMMU"},
    Named{VFIO_GROUP_GET_STATUS, "VFIO_GROUP_GET_STATUS"},
    Named{VFIO_GROUP_SET_CONTAINER, "VFIO_GROUP_SET_CONTAINER"},
    Named{VFIO_GROUP_UNSET_CONTAINER, "VFIO_GROUP_UNSET_CONTAINER"},
    Named{VFIO_GROUP_GET_DEVICE_FD, "VFIO_GROUP_GET_DEVICE_FD"},
    Named{VFIO_DEVICE_GET_INFO, "VFIO_DEVICE_GET_INFO"},
    Named{VFIO_DEVICE_GET_REGION_INFO, "VFIO_DEVICE_GET_REGION_INFO"},
    Named{VFIO_DEVICE_GET_IRQ_INFO, "VFIO_DEVICE_GET_IRQ_INFO"},
    Named{VFIO_DEVICE_SET_IRQS, "VFIO_DEVICE_SET_IRQS"},
    Named{VFIO_DEVICE_RESET, "VFIO_DEVICE_RESET"},
    Named{VFIO_IOMMU_GET_INFO, "VFIO_IOMMU_GET_INFO"},
    Named{VFIO_IOMMU_MAP_DMA, "VFIO_IOMMU_MAP_DMA"},
    Named{VFIO_IOMMU_UNMAP_DMA, "VFIO_IOMMU_UNMAP_DMA"},
    Named{VFIO_IOMMU_ENABLE, "VFIO_IOMMU_ENABLE"},
    Named{VFIO_IOMMU_DISABLE, "VFIO_IOMMU_DISABLE"},
};

}  // namespace

std::string IoctlName(unsigned long request) {
  for (const Named& n : kNames) {
    if (n.request == request) {
      return std::string(n.name);
    }
  }
  return "ioctl " + Hex(request);
}

std::optional<unsigned long> IoctlRequestByName(std::string_view name) {
  for (const Named& n : kNames) {
    if (n.name == name) {
      return n.request;
    }
  }
  return std::nullopt;
}

}  // namespace vfiod::kernel
