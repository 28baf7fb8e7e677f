// Typed VFIO ioctls: the only code (with the kernel implementations and the
// model) that knows the binary layout of <linux/vfio.h>. Each function checks
// its arguments before the ioctl and checks what the kernel reports back.
//
// Every function fails with Error{errno, "<IOCTL_NAME>"}; the errno cases named
// below are the ones callers are expected to handle, others pass through.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "kernel/kernel.h"
#include "proto/result.h"

namespace vfiod::kernel {

/// VFIO_API_VERSION as the kernel reports it (0 on every kernel so far).
inline constexpr int kVfioApiVersion = 0;

/// Extensions that vfiod probes with VFIO_CHECK_EXTENSION.
enum class Extension : uint8_t {
  kType1v2,      ///< VFIO_TYPE1v2_IOMMU
  kUnmapAll,     ///< VFIO_UNMAP_ALL
  kUpdateVaddr,  ///< VFIO_UPDATE_VADDR
  kMmioNoPin,    ///< map MMIO without pinning; not in 6.1's uAPI, probed when the headers define it
};

/// A closed interval [start, last] of IOVA space the IOMMU can translate.
struct IovaRange {
  uint64_t start = 0;
  uint64_t last = 0;
  bool operator==(const IovaRange&) const = default;
};

/// VFIO_IOMMU_GET_INFO with its capability chain decoded.
struct IommuInfo {
  uint64_t iova_pgsizes = 0;           ///< bitmap of supported page sizes
  std::vector<IovaRange> iova_ranges;  ///< empty if the cap is absent (then all of 64-bit space)
  std::optional<uint32_t> dma_avail;   ///< entries left before the dma_entry_limit
  struct Migration {
    uint64_t pgsize_bitmap = 0;
    uint64_t max_dirty_bitmap_size = 0;
  };
  std::optional<Migration> migration;
};

/// VFIO_GROUP_GET_STATUS.
struct GroupStatus {
  bool viable = false;         ///< every device in the group is bound to a VFIO driver (or none)
  bool container_set = false;  ///< the group is attached to a container
};

/// VFIO_DEVICE_GET_INFO.
struct DeviceInfo {
  uint32_t flags = 0;
  uint32_t num_regions = 0;
  uint32_t num_irqs = 0;
  [[nodiscard]] bool is_pci() const;
  [[nodiscard]] bool can_reset() const;
};

/// One mmap-able window of a region (VFIO_REGION_INFO_CAP_SPARSE_MMAP).
struct SparseArea {
  uint64_t offset = 0;  ///< relative to the region start
  uint64_t size = 0;
  bool operator==(const SparseArea&) const = default;
};

/// VFIO_DEVICE_GET_REGION_INFO with the sparse-mmap capability decoded.
struct RegionInfo {
  uint32_t index = 0;
  uint32_t flags = 0;
  uint64_t size = 0;
  uint64_t offset = 0;  ///< offset of the region within the device fd
  std::optional<std::vector<SparseArea>> sparse_mmap;  ///< set when the cap is present
  [[nodiscard]] bool readable() const;
  [[nodiscard]] bool writable() const;
  [[nodiscard]] bool mmappable() const;
};

/// VFIO_DEVICE_GET_IRQ_INFO.
struct IrqInfo {
  uint32_t index = 0;
  uint32_t flags = 0;
  uint32_t count = 0;
  [[nodiscard]] bool eventfd() const;
  [[nodiscard]] bool maskable() const;
};

/// Flag bits of the info structs, mirroring <linux/vfio.h> (checked there by
/// static_assert), for code above the kernel layer and for the model topology.
inline constexpr uint32_t kDeviceFlagReset = 1u << 0;    ///< VFIO_DEVICE_FLAGS_RESET
inline constexpr uint32_t kDeviceFlagPci = 1u << 1;      ///< VFIO_DEVICE_FLAGS_PCI
inline constexpr uint32_t kRegionFlagRead = 1u << 0;     ///< VFIO_REGION_INFO_FLAG_READ
inline constexpr uint32_t kRegionFlagWrite = 1u << 1;    ///< VFIO_REGION_INFO_FLAG_WRITE
inline constexpr uint32_t kRegionFlagMmap = 1u << 2;     ///< VFIO_REGION_INFO_FLAG_MMAP
inline constexpr uint32_t kRegionFlagCaps = 1u << 3;     ///< VFIO_REGION_INFO_FLAG_CAPS
inline constexpr uint32_t kIrqFlagEventfd = 1u << 0;     ///< VFIO_IRQ_INFO_EVENTFD
inline constexpr uint32_t kIrqFlagMaskable = 1u << 1;    ///< VFIO_IRQ_INFO_MASKABLE
inline constexpr uint32_t kIrqFlagAutomasked = 1u << 2;  ///< VFIO_IRQ_INFO_AUTOMASKED
inline constexpr uint32_t kIrqFlagNoresize = 1u << 3;    ///< VFIO_IRQ_INFO_NORESIZE

/// PCI region and IRQ indexes (VFIO_PCI_*_INDEX), without <linux/vfio.h>.
inline constexpr uint32_t kPciBar0RegionIndex = 0;
inline constexpr uint32_t kPciRomRegionIndex = 6;
inline constexpr uint32_t kPciConfigRegionIndex = 7;
inline constexpr uint32_t kPciIntxIrqIndex = 0;
inline constexpr uint32_t kPciMsiIrqIndex = 1;
inline constexpr uint32_t kPciMsixIrqIndex = 2;
inline constexpr uint32_t kPciErrIrqIndex = 3;
inline constexpr uint32_t kPciReqIrqIndex = 4;
/// vfio-pci reports 9 regions (BAR0-5, ROM, config, VGA) and 5 IRQ indexes.
inline constexpr uint32_t kPciNumRegions = 9;
inline constexpr uint32_t kPciNumIrqs = 5;

/// VFIO_IOMMU_MAP_DMA arguments.
struct DmaMap {
  uint64_t vaddr = 0;
  uint64_t iova = 0;
  uint64_t size = 0;
  bool read = true;
  bool write = true;
};

// --- container (/dev/vfio/vfio) -------------------------------------------
[[nodiscard]] Result<int> GetApiVersion(Kernel& k, int container);
/// False when the extension is unknown to the kernel (or to the headers).
[[nodiscard]] Result<bool> CheckExtension(Kernel& k, int container, Extension ext);
/// EINVAL before a group is attached, or when an IOMMU is set already (the
/// kernel says EINVAL there, not EBUSY); ENODEV: no driver supports type1v2.
[[nodiscard]] Result<void> SetIommuType1v2(Kernel& k, int container);
[[nodiscard]] Result<IommuInfo> GetIommuInfo(Kernel& k, int container);
/// EINVAL: size 0, misaligned (to the host page; the kernel then checks the
/// IOMMU's smallest page) or wrapping arguments (checked here first), or
/// outside the IOVA ranges, or no IOMMU set; EEXIST: overlaps a mapping; ENOSPC: entry limit
/// reached; ENOMEM: locked-memory limit; EFAULT: vaddr not mapped.
[[nodiscard]] Result<void> MapDma(Kernel& k, int container, const DmaMap& map);
/// Returns the bytes unmapped (0 if nothing was there). EINVAL when the range
/// would split a mapping (type1v2) or is misaligned/wrapping.
[[nodiscard]] Result<uint64_t> UnmapDma(Kernel& k, int container, uint64_t iova, uint64_t size);
/// VFIO_DMA_UNMAP_FLAG_ALL; returns the bytes unmapped. EINVAL without UNMAP_ALL.
[[nodiscard]] Result<uint64_t> UnmapAllDma(Kernel& k, int container);
/// VFIO_IOMMU_UNMAP_DMA with VFIO_DMA_UNMAP_FLAG_VADDR: every entry inside
/// [iova, iova + size) keeps its IOMMU translation and its pins (device DMA
/// goes on) but loses its process address, until UpdateVaddr() gives it a new
/// one. Returns the bytes of the entries invalidated (0 when none was there).
/// All or nothing: EINVAL when one of them is invalidated already (the
/// kernel restores the ones it had marked), when the range would split an
/// entry, or is misaligned/wrapping (checked here first); ENOTTY/EINVAL
/// without VFIO_UPDATE_VADDR.
[[nodiscard]] Result<uint64_t> InvalidateVaddr(Kernel& k, int container, uint64_t iova,
                                               uint64_t size);
/// VFIO_IOMMU_MAP_DMA with VFIO_DMA_MAP_FLAG_VADDR (no access flags): gives
/// the invalidated entry at exactly [iova, iova + size) the address `vaddr`
/// of the calling process. Nothing is pinned again: the new address must
/// map the same pages (the caller's promise; the kernel does not check it).
/// ENOENT: no entry overlaps the range; EINVAL: the entry found is not
/// invalidated or does not start at `iova` with `size`, or the arguments are
/// misaligned/wrapping (checked here first); ENOMEM (kernels that move the
/// locked-memory charge to the caller, see tests/conformance/README.md):
/// the caller's RLIMIT_MEMLOCK has no room for the entry's pins.
[[nodiscard]] Result<void> UpdateVaddr(Kernel& k, int container, uint64_t vaddr, uint64_t iova,
                                       uint64_t size);

// --- group (/dev/vfio/N) ----------------------------------------------------
[[nodiscard]] Result<GroupStatus> GetGroupStatus(Kernel& k, int group);
/// EPERM: group not viable; EINVAL: the group already has a container (the
/// kernel says EINVAL, not EBUSY) or the fd is not a container; EBADF: bad fd.
[[nodiscard]] Result<void> SetContainer(Kernel& k, int group, int container);
/// EINVAL: no container; EBUSY: device fds of the group are still open.
[[nodiscard]] Result<void> UnsetContainer(Kernel& k, int group);
/// Returns a new device fd (owner: the caller, close via k.close()).
/// ENODEV: the name is not a device of the group (checked first);
/// EINVAL: the group has no container or the container no IOMMU.
[[nodiscard]] Result<int> GetDeviceFd(Kernel& k, int group, std::string_view bdf);

// --- device -------------------------------------------------------------------
[[nodiscard]] Result<DeviceInfo> GetDeviceInfo(Kernel& k, int device);
[[nodiscard]] Result<RegionInfo> GetRegionInfo(Kernel& k, int device, uint32_t index);
[[nodiscard]] Result<IrqInfo> GetIrqInfo(Kernel& k, int device, uint32_t index);
/// VFIO_DEVICE_SET_IRQS with DATA_EVENTFD|ACTION_TRIGGER for vectors
/// [start, start + fds.size()); an fd of -1 unassigns that vector.
[[nodiscard]] Result<void> SetIrqEventfds(Kernel& k, int device, uint32_t index, uint32_t start,
                                          std::span<const int> fds);
/// VFIO_DEVICE_SET_IRQS with DATA_NONE|ACTION_TRIGGER and count 0: disable the index.
[[nodiscard]] Result<void> DisableIrqs(Kernel& k, int device, uint32_t index);
/// VFIO_DEVICE_SET_IRQS with DATA_NONE|ACTION_UNMASK for `vector`: re-enables
/// an interrupt the kernel masked when it fired (INTx is AUTOMASKED: one
/// interrupt per unmask). EINVAL: INTx not enabled or a vector other than 0;
/// ENOTTY: the index cannot be masked (MSI and MSI-X on vfio-pci).
[[nodiscard]] Result<void> UnmaskIrq(Kernel& k, int device, uint32_t index, uint32_t vector);
/// VFIO_DEVICE_RESET. ENOTTY/EINVAL when the device cannot be reset.
[[nodiscard]] Result<void> ResetDevice(Kernel& k, int device);

// --- PCI hot reset (vfio_hot_reset.cc) ----------------------------------------
/// A device that a hot reset of the device's slot or bus resets too
/// (struct vfio_pci_dependent_device), the device itself included.
struct HotResetDevice {
  uint32_t group = 0;  ///< its IOMMU group (the N of /dev/vfio/N)
  std::string bdf;     ///< "0000:01:00.0"
  bool operator==(const HotResetDevice&) const = default;
};
/// VFIO_DEVICE_GET_PCI_HOT_RESET_INFO: every device a hot reset would reset,
/// in the kernel's order. Sizes the array with one ENOSPC round (bounded).
/// ENODEV: neither the slot nor the bus can be reset (a device on the root
/// bus); EPERM: an affected device has no IOMMU group.
[[nodiscard]] Result<std::vector<HotResetDevice>> GetHotResetInfo(Kernel& k, int device);
/// VFIO_DEVICE_PCI_HOT_RESET with `group_fds` (VFIO group fds, 1 to 256).
/// ENODEV: no slot or bus reset for this device; EINVAL: no fds, more fds
/// than affected devices, an fd that is not a group, an affected device of
/// VFIO in none of the groups, or a device on the bus not bound to vfio-pci
/// (checked by the kernel); EBADF: an fd is not open.
[[nodiscard]] Result<void> HotReset(Kernel& k, int device, std::span<const int> group_fds);

}  // namespace vfiod::kernel
