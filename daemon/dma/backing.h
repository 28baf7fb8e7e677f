// Backings: memory that vfiod owns and can DMA-map, plus (when a client must
// share it) the fd vfiod hands over. vfiod never maps an address a client
// names: every backing is mmap'd by vfiod itself, from an fd it created or was
// given, or from a device region.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "dma/backing_memory.h"
#include "dma/huge_tmpfs.h"
#include "dma/numa.h"
#include "proto/backing.h"
#include "proto/page_sizes.h"
#include "proto/result.h"
#include "proto/unique_fd.h"

namespace vfiod::dma {

/// What a backing is made of: the wire's one backing enum (proto/backing.h),
/// so the engine's record names it as clients do (memfd: a client's memfd or
/// hugetlbfs file; bar: a device's MMIO BAR).
using BackingKind = wire::Backing;

/// Everything a Backing is made of; filled in by the factories.
struct BackingParts {
  BackingKind kind = BackingKind::k4K;
  UniqueFd fd;                     ///< the shareable fd, or invalid (anonymous, BAR)
  uint64_t fd_offset = 0;          ///< where the mapping starts in `fd`
  MappedMemory memory;             ///< vfiod's own mapping (empty for a BAR)
  std::shared_ptr<void> external;  ///< owner of a mapping made elsewhere (BAR)
  uint64_t vaddr = 0;              ///< start of the memory in vfiod's address space
  uint64_t size = 0;
  uint64_t page_size = kPage4K;  ///< physical granularity that is guaranteed
  uint64_t alignment = kPage4K;  ///< vaddr alignment (the superpage worth aiming for)
  bool mmio = false;             ///< device memory: never pinned, no struct page
  int numa_node = -1;            ///< node asked for, -1 if none
};

/// Memory that can be DMA-mapped. Move-only; destroying it unmaps vfiod's view
/// (the engine keeps a backing alive, through shared_ptr, while it is mapped).
/// Not thread-safe; immutable once built, so const access is safe anywhere.
class Backing {
 public:
  explicit Backing(BackingParts parts);
  Backing(Backing&&) noexcept = default;
  Backing& operator=(Backing&&) noexcept = default;

  [[nodiscard]] BackingKind kind() const { return kind_; }
  [[nodiscard]] uint64_t vaddr() const { return vaddr_; }
  [[nodiscard]] void* data() const { return reinterpret_cast<void*>(vaddr_); }
  [[nodiscard]] uint64_t size() const { return size_; }
  [[nodiscard]] uint64_t page_size() const { return page_size_; }
  [[nodiscard]] uint64_t alignment() const { return alignment_; }
  [[nodiscard]] bool mmio() const { return mmio_; }
  [[nodiscard]] int numa_node() const { return numa_node_; }
  /// The shareable fd (borrowed; dup it to hand it out), or -1.
  [[nodiscard]] int fd() const { return fd_.get(); }
  [[nodiscard]] uint64_t fd_offset() const { return fd_offset_; }

 private:
  BackingKind kind_;
  uint64_t vaddr_;
  uint64_t size_;
  uint64_t page_size_;
  uint64_t alignment_;
  bool mmio_;
  int numa_node_;
  uint64_t fd_offset_;
  // Teardown order (reverse of declaration): vfiod's mapping goes first, then
  // the fd it maps, then `external_` (a device region whose fd must outlive
  // its own mmap, which that object tears down itself).
  std::shared_ptr<void> external_;
  UniqueFd fd_;
  MappedMemory memory_;
};

/// hugetlb memory from a memfd (MFD_HUGETLB), reserved with fallocate so that
/// pool exhaustion is an error here and never a SIGBUS later, then populated
/// and sealed against shrinking and growing. `huge_page_size` is kPage2M or
/// kPage1G; `size` a non-zero multiple of it.
/// Errors: EINVAL bad size / page size, or a page size the kernel lacks;
/// ENOMEM "no free 1 GiB hugepages: see /sys/kernel/mm/hugepages/..." when the
/// pool cannot supply the pages; EINVAL from mbind when the node is not online.
[[nodiscard]] Result<Backing> CreateHugetlbBacking(uint64_t size, uint64_t huge_page_size,
                                                   const NumaPolicy& numa = {});

/// Transparent huge pages, 2 MiB aligned, advised MADV_HUGEPAGE and populated.
/// `shareable`: a file on the installed huge tmpfs (InstalledHugeTmpfs: PMD-sized
/// folios on any host), else a shmem memfd (huge folios only if
/// /sys/kernel/mm/transparent_hugepage/shmem_enabled allows "advise");
/// not shareable: anonymous private memory (no fd). EINVAL: size 0 or not 4 KiB aligned;
/// ENOMEM when populating fails.
[[nodiscard]] Result<Backing> CreateThpBacking(uint64_t size, bool shareable,
                                               const NumaPolicy& numa = {});
/// The same with an explicit huge tmpfs (null: a memfd) instead of the installed one.
[[nodiscard]] Result<Backing> CreateThpBacking(uint64_t size, bool shareable,
                                               const NumaPolicy& numa, const HugeTmpfs* tmpfs);

/// 4 KiB pages, MADV_NOHUGEPAGE, populated. `shareable` as for THP.
/// EINVAL: size 0 or not 4 KiB aligned; ENOMEM when populating fails.
[[nodiscard]] Result<Backing> CreatePagesBacking(uint64_t size, bool shareable,
                                                 const NumaPolicy& numa = {});

/// Takes a client's fd and maps [offset, offset + length) of it. Accepted: a
/// regular file on tmpfs/shmem (a memfd, or a file opened by path) or on
/// hugetlbfs, opened read-write, at least offset + length long; offset and
/// length multiples of the file's page size. The file is sealed F_SEAL_SHRINK
/// when its sealing is open; a file whose sealing is locked (F_SEAL_SEAL) is
/// taken unsealed: vfiod never touches the view, so the client shrinking or
/// punching the file cannot fault vfiod (see backing_client.cc).
/// Errors: EBADF not an open fd; EINVAL wrong file type or file system, not
/// read-write, misaligned offset/length, or too short (detail says which).
[[nodiscard]] Result<Backing> AdoptClientFd(UniqueFd fd, uint64_t offset, uint64_t length);

/// The memory behind a mapping a previous vfiod made (live restart): maps all
/// of `fd` (a memfd or a tmpfs/hugetlbfs file, what vfiod stored), shared,
/// at offset 0, without populating or sealing; the backing reports `kind`.
/// Errors: EBADF not an open fd; EINVAL `kind` is kBar, the fd is not a
/// regular tmpfs/hugetlbfs file opened read-write, or is empty or not a
/// multiple of its page size; errno of mmap (ENOMEM).
[[nodiscard]] Result<Backing> ReopenBacking(UniqueFd fd, BackingKind kind);

/// ENOMEM with an actionable detail when pinning `bytes` more would exceed
/// RLIMIT_MEMLOCK (counting VmLck already locked). Always Ok with
/// CAP_IPC_LOCK, or with an unlimited limit.
[[nodiscard]] Result<void> CheckMemlockHeadroom(uint64_t bytes);

/// The locked-memory figure of this process (VmLck of /proc/self/status), bytes.
[[nodiscard]] Result<uint64_t> LockedBytes();

}  // namespace vfiod::dma
