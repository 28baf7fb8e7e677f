// The guest benchmark's rig: a container of its own on the real kernel (the
// NVMe controller's group, plus ivshmem's for the BAR), raw map/unmap calls on
// it, and the kinds of memory the table compares.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "dma/backing_memory.h"
#include "kernel/kernel.h"
#include "proto/result.h"
#include "proto/unique_fd.h"
#include "vfio/container.h"
#include "vfio/device.h"

namespace vfiod::bench {

/// The memory kinds of the DMA map table.
enum class MemKind : uint8_t {
  kThp,        ///< anonymous, MADV_HUGEPAGE, touched
  kPages4K,    ///< anonymous, MADV_NOHUGEPAGE, populated
  kHugetlb2M,  ///< hugetlbfs, 2 MiB pages
  kHugetlb1G,  ///< hugetlbfs, 1 GiB pages
};

[[nodiscard]] const char* MemKindName(MemKind kind);
/// The page size a buffer of `kind` must be a multiple of (4K, 2M, 1G).
[[nodiscard]] uint64_t MemKindPage(MemKind kind);

/// A populated buffer. `fd` is set for memfd buffers (what a client passes to
/// dma.map_fd). Teardown: the mapping goes before the fd.
struct Buffer {
  UniqueFd fd;
  dma::MappedMemory memory;
  [[nodiscard]] uint64_t vaddr() const { return memory.vaddr(); }
  [[nodiscard]] uint64_t size() const { return memory.size(); }
};

/// Anonymous memory of `kind` (the "raw" column), populated.
/// Errors: errno of mmap/madvise/populate (ENOMEM: hugetlb pool too small).
[[nodiscard]] Result<Buffer> MakeAnonBuffer(MemKind kind, uint64_t size);
/// A memfd of `kind` (shmem for 4K/THP, hugetlbfs otherwise), populated and mapped.
[[nodiscard]] Result<Buffer> MakeMemfdBuffer(MemKind kind, uint64_t size);

/// Sets the number of hugetlb pages of `page` size (2M or 1G) in the pool,
/// returning the number the kernel then reports. Errors: errno of the write.
[[nodiscard]] Result<uint64_t> SetHugepagePool(uint64_t page, uint64_t pages);
/// Large folios of 2 MiB or more in [vaddr, vaddr + size), as a fraction of
/// the range (from pagemap/kpageflags): how much of a THP buffer is huge.
[[nodiscard]] double HugeFraction(uint64_t vaddr, uint64_t size);

/// The IOMMU group number of `bdf`, from sysfs. ENOENT without a group.
[[nodiscard]] Result<int> IommuGroupOf(const std::string& bdf);

/// A type1v2 container with one or more devices' groups attached.
class GuestRig {
 public:
  /// Opens a container and attaches the group of `dma_bdf` (the device whose
  /// domain the raw maps go to) and, if not empty, of `bar_bdf` (opened as a
  /// device for BAR mappings).
  [[nodiscard]] static Result<std::unique_ptr<GuestRig>> Open(const std::string& dma_bdf,
                                                              const std::string& bar_bdf);

  /// One VFIO_IOMMU_MAP_DMA / UNMAP_DMA through the kernel seam.
  [[nodiscard]] Result<void> Map(uint64_t vaddr, uint64_t iova, uint64_t size) const;
  /// Fails with EIO when the kernel unmapped another number of bytes than `size`.
  [[nodiscard]] Result<void> Unmap(uint64_t iova, uint64_t size) const;

  [[nodiscard]] kernel::Kernel& kernel() const { return *kernel_; }
  [[nodiscard]] const std::shared_ptr<vfio::Container>& container() const { return container_; }
  /// The device opened for BAR mappings (null without bar_bdf).
  [[nodiscard]] const std::shared_ptr<vfio::Device>& bar_device() const { return bar_device_; }
  [[nodiscard]] uint64_t iova_pgsizes() const { return pgsizes_; }

 private:
  GuestRig() = default;

  // Teardown: the device (holding its group) before the DMA device's group,
  // both before the container; the kernel seam outlives them all.
  std::unique_ptr<kernel::Kernel> kernel_;
  std::shared_ptr<vfio::Container> container_;
  std::shared_ptr<vfio::Group> dma_group_;
  std::shared_ptr<vfio::Device> bar_device_;
  uint64_t pgsizes_ = 0;
};

}  // namespace vfiod::bench
