// RAII for the address-space ranges that back DMA memory, and the aligned
// placement that makes a buffer's virtual address congruent with its page size
// (so the IOMMU can use superpages and hugetlb MAP_FIXED is legal).
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <utility>

#include "proto/result.h"

namespace vfiod::dma {

/// Move-only owner of one mmap'd range; munmap on destruction.
class MappedMemory {
 public:
  MappedMemory() = default;
  /// Takes ownership of [addr, addr + len), which must come from mmap.
  MappedMemory(void* addr, size_t len) : addr_(addr), len_(len) {}
  MappedMemory(const MappedMemory&) = delete;
  MappedMemory& operator=(const MappedMemory&) = delete;
  MappedMemory(MappedMemory&& other) noexcept
      : addr_(std::exchange(other.addr_, nullptr)), len_(std::exchange(other.len_, 0)) {}
  MappedMemory& operator=(MappedMemory&& other) noexcept;
  ~MappedMemory() { Reset(); }

  [[nodiscard]] void* addr() const { return addr_; }
  [[nodiscard]] uint64_t vaddr() const { return reinterpret_cast<uint64_t>(addr_); }
  [[nodiscard]] size_t size() const { return len_; }
  [[nodiscard]] bool valid() const { return addr_ != nullptr; }

  /// Unmaps the range now (no-op when empty).
  void Reset();

 private:
  void* addr_ = nullptr;
  size_t len_ = 0;
};

/// mmap(len, prot, flags, fd, off) at an address congruent to `phase` modulo
/// `align` (a power of two, at least the base page size; phase a multiple of
/// the base page size, reduced modulo align). Reserves len + align of
/// PROT_NONE address space, maps over its aligned part with MAP_FIXED and
/// returns the slop. EINVAL: len 0 or align not a power of two; other errno
/// from mmap (ENOMEM for a hugetlb mapping whose pages cannot be reserved).
[[nodiscard]] Result<MappedMemory> MapAligned(size_t len, size_t align, int prot, int flags, int fd,
                                              off_t off, uint64_t phase = 0);

/// Faults every page of [addr, addr + len) in, writable, without changing its
/// contents. Uses MADV_POPULATE_WRITE so that a failure (hugetlb pool empty,
/// memory cgroup limit) is an error rather than SIGBUS; on kernels without it
/// (EINVAL), falls back to an atomic add of zero on one byte per page, which is
/// safe only when the pages are known to be allocated (hugetlb after fallocate).
/// ENOMEM / EFAULT / EHWPOISON pass through.
[[nodiscard]] Result<void> PopulateWrite(void* addr, size_t len, size_t page_size);

/// True when `v` is a power of two (and not 0).
[[nodiscard]] constexpr bool IsPowerOfTwo(uint64_t v) { return v != 0 && (v & (v - 1)) == 0; }
/// True when `v` is a multiple of the power of two `align`.
[[nodiscard]] constexpr bool IsAligned(uint64_t v, uint64_t align) {
  return (v & (align - 1)) == 0;
}

}  // namespace vfiod::dma
