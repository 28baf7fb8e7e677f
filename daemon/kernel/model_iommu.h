// The type1v2 IOMMU driver of the model (Linux 6.1 vfio_iommu_type1.c):
// one instance per container that has had VFIO_SET_IOMMU. Keeps the
// container's DMA mappings in an interval map keyed by IOVA and follows the
// kernel's rules and their order: argsz/flags -> alignment to the smallest
// IOMMU page -> wrap -> overlap (EEXIST) -> entry limit (ENOSPC) -> IOVA
// ranges (EINVAL) -> pinning (EFAULT, ENOMEM). Unmap refuses to split a
// mapping (EINVAL), reports the bytes it removed, and FLAG_ALL removes all.
//
// Not thread-safe by itself: the owning ModelKernel holds its mutex.
#pragma once

#include <cstdint>
#include <map>

#include "kernel/model_kernel.h"
#include "proto/result.h"

namespace vfiod::kernel {

/// What the IOMMU needs from the process model when it pins user memory.
class ModelPinner {
 public:
  virtual ~ModelPinner() = default;
  /// Pins [vaddr, vaddr + size), for device writes too if `write`. EFAULT:
  /// part of it is not mapped, or not readable, or (with `write`) not
  /// writable; ENOMEM: the memlock limit would be exceeded. Returns the bytes
  /// charged (MMIO ranges are not charged, as for VM_PFNMAP in the kernel).
  virtual Result<uint64_t> Pin(uint64_t vaddr, uint64_t size, bool write) = 0;
  /// Releases a charge returned by Pin().
  virtual void Unpin(uint64_t charged) = 0;
};

class ModelIommu {
 public:
  ModelIommu(const ModelKnobs& knobs, ModelPinner& pinner);
  /// Unmaps everything and releases the pins (the container lost its IOMMU).
  ~ModelIommu();
  ModelIommu(const ModelIommu&) = delete;
  ModelIommu& operator=(const ModelIommu&) = delete;

  /// Container ioctls passed to the driver: VFIO_CHECK_EXTENSION (arg is the
  /// extension), VFIO_IOMMU_GET_INFO, VFIO_IOMMU_MAP_DMA, VFIO_IOMMU_UNMAP_DMA
  /// (arg points at the struct). ENOTTY for anything else.
  Result<int> Ioctl(unsigned long request, unsigned long arg);

  /// The driver's VFIO_CHECK_EXTENSION answer; `iommu` is null before SET_IOMMU.
  static int CheckExtension(const ModelIommu* iommu, unsigned long extension);

  [[nodiscard]] std::vector<ModelEntry> Entries() const;

 private:
  // One entry, 16 bytes (a container may hold 65535; in Linux this state is
  // kernel memory, here it is the daemon's heap): the flags ride in the low
  // bits of the vaddr, which is aligned to the smallest IOMMU page.
  struct Dma {
    static constexpr uint64_t kRead = 1;
    static constexpr uint64_t kWrite = 2;
    static constexpr uint64_t kVaddrInvalid = 4;  // VFIO_DMA_UNMAP_FLAG_VADDR
    static constexpr uint64_t kChargedAll = 8;    // charged == size (else 0 or partial_charges_)
    static constexpr uint64_t kFlags = 15;
    uint64_t size = 0;
    uint64_t vaddr_flags = 0;
    [[nodiscard]] uint64_t vaddr() const { return vaddr_flags & ~kFlags; }
    [[nodiscard]] bool has(uint64_t flag) const { return (vaddr_flags & flag) != 0; }
  };
  static_assert(sizeof(Dma) == 16);
  using DmaMap = std::map<uint64_t, Dma>;  // by IOVA; intervals never overlap

  Result<int> GetInfo(void* arg) const;
  Result<int> MapDma(void* arg);
  Result<int> UnmapDma(void* arg);
  Result<void> DoMap(uint32_t flags, uint64_t vaddr, uint64_t iova, uint64_t size);
  Result<uint64_t> DoUnmap(uint32_t flags, uint64_t iova, uint64_t size);
  /// The mapping overlapping [start, start + size) with the lowest IOVA, as
  /// vfio_find_dma() (size 0 finds the mapping containing `start`).
  DmaMap::iterator Find(uint64_t start, uint64_t size);
  [[nodiscard]] bool InIovaRanges(uint64_t first, uint64_t last) const;
  [[nodiscard]] uint64_t MinPage() const;
  void Remove(DmaMap::iterator it);
  /// The bytes pinning the entry at `it` charged against the memlock limit.
  [[nodiscard]] uint64_t Charged(DmaMap::const_iterator it) const;

  const ModelKnobs knobs_;
  ModelPinner& pinner_;
  DmaMap dmas_;
  // Charges of entries that are partly MMIO (neither 0 nor their size), by IOVA.
  std::map<uint64_t, uint64_t> partial_charges_;
  uint32_t dma_avail_;
};

}  // namespace vfiod::kernel
