// Typed VFIO ioctls over Kernel::ioctl. Each function checks its arguments
// before the call and checks what the kernel reports back.
#include "kernel/vfio_api.h"

#include <linux/vfio.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <vector>

#include "kernel/cap_chain.h"
#include "proto/hex.h"

namespace vfiod::kernel {

static_assert(kDeviceFlagReset == VFIO_DEVICE_FLAGS_RESET);
static_assert(kDeviceFlagPci == VFIO_DEVICE_FLAGS_PCI);
static_assert(kRegionFlagRead == VFIO_REGION_INFO_FLAG_READ);
static_assert(kRegionFlagWrite == VFIO_REGION_INFO_FLAG_WRITE);
static_assert(kRegionFlagMmap == VFIO_REGION_INFO_FLAG_MMAP);
static_assert(kRegionFlagCaps == VFIO_REGION_INFO_FLAG_CAPS);
static_assert(kIrqFlagEventfd == VFIO_IRQ_INFO_EVENTFD);
static_assert(kIrqFlagMaskable == VFIO_IRQ_INFO_MASKABLE);
static_assert(kIrqFlagAutomasked == VFIO_IRQ_INFO_AUTOMASKED);
static_assert(kIrqFlagNoresize == VFIO_IRQ_INFO_NORESIZE);
static_assert(kPciBar0RegionIndex == VFIO_PCI_BAR0_REGION_INDEX);
static_assert(kPciRomRegionIndex == VFIO_PCI_ROM_REGION_INDEX);
static_assert(kPciConfigRegionIndex == VFIO_PCI_CONFIG_REGION_INDEX);
static_assert(kPciNumRegions == VFIO_PCI_NUM_REGIONS);
static_assert(kPciIntxIrqIndex == VFIO_PCI_INTX_IRQ_INDEX);
static_assert(kPciMsiIrqIndex == VFIO_PCI_MSI_IRQ_INDEX);
static_assert(kPciMsixIrqIndex == VFIO_PCI_MSIX_IRQ_INDEX);
static_assert(kPciErrIrqIndex == VFIO_PCI_ERR_IRQ_INDEX);
static_assert(kPciReqIrqIndex == VFIO_PCI_REQ_IRQ_INDEX);
static_assert(kPciNumIrqs == VFIO_PCI_NUM_IRQS);
static_assert(kVfioApiVersion == VFIO_API_VERSION);

bool DeviceInfo::is_pci() const { return (flags & VFIO_DEVICE_FLAGS_PCI) != 0; }
bool DeviceInfo::can_reset() const { return (flags & VFIO_DEVICE_FLAGS_RESET) != 0; }
bool RegionInfo::readable() const { return (flags & VFIO_REGION_INFO_FLAG_READ) != 0; }
bool RegionInfo::writable() const { return (flags & VFIO_REGION_INFO_FLAG_WRITE) != 0; }
bool RegionInfo::mmappable() const { return (flags & VFIO_REGION_INFO_FLAG_MMAP) != 0; }
bool IrqInfo::eventfd() const { return (flags & VFIO_IRQ_INFO_EVENTFD) != 0; }
bool IrqInfo::maskable() const { return (flags & VFIO_IRQ_INFO_MASKABLE) != 0; }

namespace {

constexpr int kMaxInfoRequeries = 4;

uint64_t HostPageSize() { return static_cast<uint64_t>(::sysconf(_SC_PAGESIZE)); }

/// Range check shared by map and unmap: size != 0, page-aligned, no wrap.
Result<void> CheckRange(const char* op, const char* what, uint64_t addr, uint64_t size) {
  uint64_t page = HostPageSize();
  if (size == 0) {
    return Fail(EINVAL, op, "size is 0");
  }
  if ((addr | size) & (page - 1)) {
    return Fail(EINVAL, op,
                std::string(what) + " " + Hex(addr) + " or size " + Hex(size) +
                    " not aligned to the page size " + Hex(page));
  }
  if (addr + size - 1 < addr) {
    return Fail(EINVAL, op,
                std::string(what) + " " + Hex(addr) + " + size " + Hex(size) + " wraps");
  }
  return Ok();
}

/// One VFIO_IOMMU_UNMAP_DMA of [iova, iova + size) with `flags` (0 or
/// FLAG_VADDR), after CheckRange. The size the kernel reports is checked:
/// never more than asked, page-aligned (EPROTO otherwise; `done` says what
/// happened to the bytes, for the message).
Result<uint64_t> UnmapRange(Kernel& k, int container, uint64_t iova, uint64_t size, uint32_t flags,
                            const char* op, const char* done) {
  VFIOD_TRY(CheckRange(op, "iova", iova, size));
  vfio_iommu_type1_dma_unmap arg{};
  arg.argsz = sizeof arg;
  arg.flags = flags;
  arg.iova = iova;
  arg.size = size;
  VFIOD_TRY(k.ioctl(container, VFIO_IOMMU_UNMAP_DMA, &arg));
  if (arg.size > size || (arg.size & (HostPageSize() - 1)) != 0) {
    return Fail(EPROTO, op,
                "kernel reported " + Hex(arg.size) + " bytes " + done + " for a " + Hex(size) +
                    " byte request");
  }
  return arg.size;
}

template <class T>
T ReadAt(std::span<const std::byte> buf, size_t off) {
  T v{};
  std::memcpy(&v, buf.data() + off, sizeof v);
  return v;
}

/// Issues a GET_INFO-style ioctl whose struct starts with `argsz` and may grow
/// a capability chain: re-queries with the size the kernel asks for.
/// `prepare` fills the fixed part (argsz is set here).
template <class Info, class Prepare>
Result<std::vector<std::byte>> QueryGrowing(Kernel& k, int fd, unsigned long request,
                                            const char* op, Prepare prepare) {
  uint32_t argsz = sizeof(Info);
  for (int attempt = 0; attempt < kMaxInfoRequeries; ++attempt) {
    std::vector<std::byte> buf(argsz);
    Info fixed{};
    prepare(fixed);
    fixed.argsz = argsz;
    std::memcpy(buf.data(), &fixed, sizeof fixed);
    VFIOD_TRY(k.ioctl(fd, request, buf.data()));
    uint32_t wanted = ReadAt<Info>(buf, 0).argsz;
    if (wanted <= argsz) {
      return buf;
    }
    argsz = wanted;
  }
  return Fail(EPROTO, op, "argsz kept growing");
}

Result<void> DecodeIommuCap(const CapView& cap, IommuInfo& info) {
  std::span<const std::byte> d = cap.data;
  switch (cap.id) {
    case VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE: {
      constexpr size_t kFixed = sizeof(vfio_iommu_type1_info_cap_iova_range);
      if (d.size() < kFixed) {
        return Fail(EPROTO, "VFIO_IOMMU_GET_INFO", "truncated IOVA_RANGE capability");
      }
      uint32_t n = ReadAt<uint32_t>(d, offsetof(vfio_iommu_type1_info_cap_iova_range, nr_iovas));
      if ((d.size() - kFixed) / sizeof(vfio_iova_range) < n) {
        return Fail(EPROTO, "VFIO_IOMMU_GET_INFO", "IOVA_RANGE count exceeds the reply");
      }
      for (uint32_t i = 0; i < n; ++i) {
        auto r = ReadAt<vfio_iova_range>(d, kFixed + i * sizeof(vfio_iova_range));
        info.iova_ranges.push_back({r.start, r.end});
      }
      return Ok();
    }
    case VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL:
      if (d.size() < sizeof(vfio_iommu_type1_info_dma_avail)) {
        return Fail(EPROTO, "VFIO_IOMMU_GET_INFO", "truncated DMA_AVAIL capability");
      }
      info.dma_avail = ReadAt<vfio_iommu_type1_info_dma_avail>(d, 0).avail;
      return Ok();
    case VFIO_IOMMU_TYPE1_INFO_CAP_MIGRATION: {
      if (d.size() < sizeof(vfio_iommu_type1_info_cap_migration)) {
        return Fail(EPROTO, "VFIO_IOMMU_GET_INFO", "truncated MIGRATION capability");
      }
      auto m = ReadAt<vfio_iommu_type1_info_cap_migration>(d, 0);
      info.migration = IommuInfo::Migration{m.pgsize_bitmap, m.max_dirty_bitmap_size};
      return Ok();
    }
    default:
      return Ok();  // unknown capabilities are skipped, as the uAPI intends
  }
}

Result<void> DecodeSparseCap(const CapView& cap, RegionInfo& info) {
  if (cap.id != VFIO_REGION_INFO_CAP_SPARSE_MMAP) {
    return Ok();
  }
  constexpr size_t kFixed = sizeof(vfio_region_info_cap_sparse_mmap);
  std::span<const std::byte> d = cap.data;
  if (d.size() < kFixed) {
    return Fail(EPROTO, "VFIO_DEVICE_GET_REGION_INFO", "truncated SPARSE_MMAP capability");
  }
  uint32_t n = ReadAt<uint32_t>(d, offsetof(vfio_region_info_cap_sparse_mmap, nr_areas));
  if ((d.size() - kFixed) / sizeof(vfio_region_sparse_mmap_area) < n) {
    return Fail(EPROTO, "VFIO_DEVICE_GET_REGION_INFO", "SPARSE_MMAP count exceeds the reply");
  }
  std::vector<SparseArea> areas;
  for (uint32_t i = 0; i < n; ++i) {
    auto a =
        ReadAt<vfio_region_sparse_mmap_area>(d, kFixed + i * sizeof(vfio_region_sparse_mmap_area));
    areas.push_back({a.offset, a.size});
  }
  info.sparse_mmap = std::move(areas);
  return Ok();
}

}  // namespace

// --- container ---------------------------------------------------------------

Result<int> GetApiVersion(Kernel& k, int container) {
  return k.ioctl_value(container, VFIO_GET_API_VERSION, 0);
}

Result<bool> CheckExtension(Kernel& k, int container, Extension ext) {
  unsigned long id = 0;
  switch (ext) {
    case Extension::kType1v2:
      id = VFIO_TYPE1v2_IOMMU;
      break;
    case Extension::kUnmapAll:
      id = VFIO_UNMAP_ALL;
      break;
    case Extension::kUpdateVaddr:
      id = VFIO_UPDATE_VADDR;
      break;
    case Extension::kMmioNoPin:
#ifdef VFIO_MMIO_NO_PIN  // no released uAPI header defines it yet (6.1 does not)
      id = VFIO_MMIO_NO_PIN;
      break;
#else
      return false;
#endif
  }
  int ret = VFIOD_TRY(k.ioctl_value(container, VFIO_CHECK_EXTENSION, id));
  return ret > 0;
}

Result<void> SetIommuType1v2(Kernel& k, int container) {
  VFIOD_TRY(k.ioctl_value(container, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU));
  return Ok();
}

Result<IommuInfo> GetIommuInfo(Kernel& k, int container) {
  auto buf = VFIOD_TRY(QueryGrowing<vfio_iommu_type1_info>(k, container, VFIO_IOMMU_GET_INFO,
                                                           "VFIO_IOMMU_GET_INFO", [](auto&) {}));
  auto fixed = ReadAt<vfio_iommu_type1_info>(buf, 0);
  IommuInfo info;
  if (fixed.flags & VFIO_IOMMU_INFO_PGSIZES) {
    info.iova_pgsizes = fixed.iova_pgsizes;
  }
  if ((fixed.flags & VFIO_IOMMU_INFO_CAPS) && fixed.cap_offset != 0) {
    VFIOD_TRY(WalkCapChain(buf, fixed.cap_offset,
                           [&](const CapView& cap) { return DecodeIommuCap(cap, info); }));
  }
  return info;
}

Result<void> MapDma(Kernel& k, int container, const DmaMap& map) {
  constexpr const char* kOp = "VFIO_IOMMU_MAP_DMA";
  VFIOD_TRY(CheckRange(kOp, "iova", map.iova, map.size));
  VFIOD_TRY(CheckRange(kOp, "vaddr", map.vaddr, map.size));
  if (!map.read && !map.write) {
    return Fail(EINVAL, kOp, "neither read nor write access requested");
  }
  vfio_iommu_type1_dma_map arg{};
  arg.argsz = sizeof arg;
  arg.flags = (map.read ? VFIO_DMA_MAP_FLAG_READ : 0) | (map.write ? VFIO_DMA_MAP_FLAG_WRITE : 0);
  arg.vaddr = map.vaddr;
  arg.iova = map.iova;
  arg.size = map.size;
  VFIOD_TRY(k.ioctl(container, VFIO_IOMMU_MAP_DMA, &arg));
  return Ok();
}

Result<uint64_t> UnmapDma(Kernel& k, int container, uint64_t iova, uint64_t size) {
  return UnmapRange(k, container, iova, size, 0, "VFIO_IOMMU_UNMAP_DMA", "unmapped");
}

Result<uint64_t> UnmapAllDma(Kernel& k, int container) {
  vfio_iommu_type1_dma_unmap arg{};
  arg.argsz = sizeof arg;
  arg.flags = VFIO_DMA_UNMAP_FLAG_ALL;
  VFIOD_TRY(k.ioctl(container, VFIO_IOMMU_UNMAP_DMA, &arg));
  if ((arg.size & (HostPageSize() - 1)) != 0) {
    return Fail(EPROTO, "VFIO_IOMMU_UNMAP_DMA", "unaligned unmapped size reported");
  }
  return arg.size;
}

Result<uint64_t> InvalidateVaddr(Kernel& k, int container, uint64_t iova, uint64_t size) {
  return UnmapRange(k, container, iova, size, VFIO_DMA_UNMAP_FLAG_VADDR,
                    "VFIO_IOMMU_UNMAP_DMA(FLAG_VADDR)", "invalidated");
}

Result<void> UpdateVaddr(Kernel& k, int container, uint64_t vaddr, uint64_t iova, uint64_t size) {
  constexpr const char* kOp = "VFIO_IOMMU_MAP_DMA(FLAG_VADDR)";
  VFIOD_TRY(CheckRange(kOp, "iova", iova, size));
  VFIOD_TRY(CheckRange(kOp, "vaddr", vaddr, size));
  vfio_iommu_type1_dma_map arg{};
  arg.argsz = sizeof arg;
  arg.flags = VFIO_DMA_MAP_FLAG_VADDR;
  arg.vaddr = vaddr;
  arg.iova = iova;
  arg.size = size;
  VFIOD_TRY(k.ioctl(container, VFIO_IOMMU_MAP_DMA, &arg));
  return Ok();
}

// --- group ---------------------------------------------------------------------

Result<GroupStatus> GetGroupStatus(Kernel& k, int group) {
  vfio_group_status arg{};
  arg.argsz = sizeof arg;
  VFIOD_TRY(k.ioctl(group, VFIO_GROUP_GET_STATUS, &arg));
  return GroupStatus{(arg.flags & VFIO_GROUP_FLAGS_VIABLE) != 0,
                     (arg.flags & VFIO_GROUP_FLAGS_CONTAINER_SET) != 0};
}

Result<void> SetContainer(Kernel& k, int group, int container) {
  if (container < 0) {
    return Fail(EBADF, "VFIO_GROUP_SET_CONTAINER", "negative container fd");
  }
  int fd = container;
  VFIOD_TRY(k.ioctl(group, VFIO_GROUP_SET_CONTAINER, &fd));
  return Ok();
}

Result<void> UnsetContainer(Kernel& k, int group) {
  VFIOD_TRY(k.ioctl_value(group, VFIO_GROUP_UNSET_CONTAINER, 0));
  return Ok();
}

Result<int> GetDeviceFd(Kernel& k, int group, std::string_view bdf) {
  if (bdf.empty() || bdf.size() >= 4096 || bdf.find('\0') != std::string_view::npos) {
    return Fail(EINVAL, "VFIO_GROUP_GET_DEVICE_FD", "bad device name");
  }
  std::string name(bdf);
  return k.ioctl(group, VFIO_GROUP_GET_DEVICE_FD, name.data());
}

// --- device --------------------------------------------------------------------

Result<DeviceInfo> GetDeviceInfo(Kernel& k, int device) {
  vfio_device_info arg{};
  arg.argsz = sizeof arg;
  VFIOD_TRY(k.ioctl(device, VFIO_DEVICE_GET_INFO, &arg));
  return DeviceInfo{arg.flags, arg.num_regions, arg.num_irqs};
}

Result<RegionInfo> GetRegionInfo(Kernel& k, int device, uint32_t index) {
  auto buf = VFIOD_TRY(QueryGrowing<vfio_region_info>(
      k, device, VFIO_DEVICE_GET_REGION_INFO, "VFIO_DEVICE_GET_REGION_INFO",
      [index](vfio_region_info& r) { r.index = index; }));
  auto fixed = ReadAt<vfio_region_info>(buf, 0);
  RegionInfo info{fixed.index, fixed.flags, fixed.size, fixed.offset, std::nullopt};
  if ((fixed.flags & VFIO_REGION_INFO_FLAG_CAPS) && fixed.cap_offset != 0) {
    VFIOD_TRY(WalkCapChain(buf, fixed.cap_offset,
                           [&](const CapView& cap) { return DecodeSparseCap(cap, info); }));
  }
  return info;
}

Result<IrqInfo> GetIrqInfo(Kernel& k, int device, uint32_t index) {
  vfio_irq_info arg{};
  arg.argsz = sizeof arg;
  arg.index = index;
  VFIOD_TRY(k.ioctl(device, VFIO_DEVICE_GET_IRQ_INFO, &arg));
  return IrqInfo{arg.index, arg.flags, arg.count};
}

Result<void> SetIrqEventfds(Kernel& k, int device, uint32_t index, uint32_t start,
                            std::span<const int> fds) {
  constexpr const char* kOp = "VFIO_DEVICE_SET_IRQS";
  if (fds.empty() || fds.size() > 4096 || start > UINT32_MAX - fds.size()) {
    return Fail(EINVAL, kOp, "bad vector range (use DisableIrqs to disable)");
  }
  std::vector<std::byte> buf(sizeof(vfio_irq_set) + fds.size() * sizeof(int32_t));
  vfio_irq_set hdr{};
  hdr.argsz = static_cast<uint32_t>(buf.size());
  hdr.flags = VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER;
  hdr.index = index;
  hdr.start = start;
  hdr.count = static_cast<uint32_t>(fds.size());
  std::memcpy(buf.data(), &hdr, sizeof hdr);
  for (size_t i = 0; i < fds.size(); ++i) {
    int32_t fd = fds[i];
    std::memcpy(buf.data() + sizeof hdr + i * sizeof fd, &fd, sizeof fd);
  }
  VFIOD_TRY(k.ioctl(device, VFIO_DEVICE_SET_IRQS, buf.data()));
  return Ok();
}

Result<void> DisableIrqs(Kernel& k, int device, uint32_t index) {
  vfio_irq_set hdr{};
  hdr.argsz = sizeof hdr;
  hdr.flags = VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER;
  hdr.index = index;
  VFIOD_TRY(k.ioctl(device, VFIO_DEVICE_SET_IRQS, &hdr));
  return Ok();
}

Result<void> UnmaskIrq(Kernel& k, int device, uint32_t index, uint32_t vector) {
  vfio_irq_set hdr{};
  hdr.argsz = sizeof hdr;
  hdr.flags = VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_UNMASK;
  hdr.index = index;
  hdr.start = vector;
  hdr.count = 1;
  VFIOD_TRY(k.ioctl(device, VFIO_DEVICE_SET_IRQS, &hdr));
  return Ok();
}

Result<void> ResetDevice(Kernel& k, int device) {
  VFIOD_TRY(k.ioctl_value(device, VFIO_DEVICE_RESET, 0));
  return Ok();
}

}  // namespace vfiod::kernel
