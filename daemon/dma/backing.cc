#include "dma/backing.h"

#include <fcntl.h>
#include <linux/memfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include <fstream>

namespace vfiod::dma {
namespace {

std::string HugePageName(uint64_t huge_page_size) {
  return huge_page_size == kPage1G ? "1 GiB" : "2 MiB";
}

std::string PoolDir(uint64_t huge_page_size) {
  return "/sys/kernel/mm/hugepages/hugepages-" + std::to_string(huge_page_size >> 10) + "kB";
}

// ENOMEM telling the operator which pool to grow and how much is free now.
std::unexpected<Error> PoolExhausted(std::string op, uint64_t huge_page_size, uint64_t size) {
  std::string free_pages = "?";
  std::ifstream in(PoolDir(huge_page_size) + "/free_hugepages");
  in >> free_pages;
  return Fail(ENOMEM, std::move(op),
              "no free " + HugePageName(huge_page_size) + " hugepages: see " +
                  PoolDir(huge_page_size) + "/nr_hugepages (free " + free_pages + ", needed " +
                  std::to_string(size / huge_page_size) + ")");
}

Result<UniqueFd> CreateMemfd(const char* name, unsigned int flags) {
  const int fd = ::memfd_create(name, flags | MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (fd < 0) {
    return ErrnoError(std::string("memfd_create ") + name);
  }
  return UniqueFd(fd);
}

Result<void> Truncate(const UniqueFd& fd, uint64_t size) {
  if (::ftruncate(fd.get(), static_cast<off_t>(size)) != 0) {
    return ErrnoError("ftruncate");
  }
  return Ok();
}

Result<void> Seal(const UniqueFd& fd) {
  if (::fcntl(fd.get(), F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW) != 0) {
    return ErrnoError("fcntl(F_ADD_SEALS)");
  }
  return Ok();
}

Result<void> Advise(const MappedMemory& memory, int advice, const char* what) {
  if (::madvise(memory.addr(), memory.size(), advice) != 0) {
    return ErrnoError(std::string("madvise(") + what + ")");
  }
  return Ok();
}

Result<void> CheckSize(uint64_t size, uint64_t unit, const char* what) {
  if (size == 0 || !IsAligned(size, unit)) {
    return Fail(
        EINVAL, what,
        "size " + std::to_string(size) + " is not a non-zero multiple of " + std::to_string(unit));
  }
  return Ok();
}

// THP and 4 KiB backings differ only in advice and alignment.
Result<Backing> CreateSmallPageBacking(BackingKind kind, uint64_t size, bool shareable,
                                       const NumaPolicy& numa, const HugeTmpfs* tmpfs) {
  const bool huge = kind == BackingKind::kThp;
  const char* op = huge ? "create THP backing" : "create 4K backing";
  VFIOD_TRY(CheckSize(size, kPage4K, op));
  BackingParts parts;
  parts.kind = kind;
  parts.alignment = huge ? kPage2M : kPage4K;
  int flags = MAP_PRIVATE | MAP_ANONYMOUS;
  // Shareable THP comes from the huge tmpfs when there is one (huge folios on
  // any host); such a file cannot be sealed, and needs not be (see
  // huge_tmpfs.h). Otherwise a sealed memfd.
  if (!huge || !shareable) {
    tmpfs = nullptr;
  }
  if (tmpfs != nullptr) {
    parts.fd = VFIOD_TRY(tmpfs->CreateFile(size));
    flags = MAP_SHARED;
  } else if (shareable) {
    parts.fd = VFIOD_TRY(CreateMemfd(huge ? "vfiod-thp" : "vfiod-4k", 0));
    VFIOD_TRY(Truncate(parts.fd, size));
    flags = MAP_SHARED;
  }
  parts.memory = VFIOD_TRY(
      MapAligned(size, parts.alignment, PROT_READ | PROT_WRITE, flags, parts.fd.get(), 0));
  VFIOD_TRY(Advise(parts.memory, huge ? MADV_HUGEPAGE : MADV_NOHUGEPAGE,
                   huge ? "MADV_HUGEPAGE" : "MADV_NOHUGEPAGE"));
  VFIOD_TRY(Advise(parts.memory, MADV_DONTFORK, "MADV_DONTFORK"));
  VFIOD_TRY(BindToNode(parts.memory.addr(), size, numa));
  VFIOD_TRY(PopulateWrite(parts.memory.addr(), size, kPage4K));
  if (shareable && tmpfs == nullptr) {
    VFIOD_TRY(Seal(parts.fd));
  }
  parts.vaddr = parts.memory.vaddr();
  parts.size = size;
  parts.numa_node = numa.node;
  return Backing(std::move(parts));
}

}  // namespace

Backing::Backing(BackingParts parts)
    : kind_(parts.kind),
      vaddr_(parts.vaddr),
      size_(parts.size),
      page_size_(parts.page_size),
      alignment_(parts.alignment),
      mmio_(parts.mmio),
      numa_node_(parts.numa_node),
      fd_offset_(parts.fd_offset),
      external_(std::move(parts.external)),
      fd_(std::move(parts.fd)),
      memory_(std::move(parts.memory)) {}

Result<Backing> CreateHugetlbBacking(uint64_t size, uint64_t huge_page_size,
                                     const NumaPolicy& numa) {
  if (huge_page_size != kPage2M && huge_page_size != kPage1G) {
    return Fail(EINVAL, "create hugetlb backing", "huge page size must be 2 MiB or 1 GiB");
  }
  VFIOD_TRY(CheckSize(size, huge_page_size, "create hugetlb backing"));
  const bool giant = huge_page_size == kPage1G;
  BackingParts parts;
  parts.kind = giant ? BackingKind::kHugetlb1G : BackingKind::kHugetlb2M;
  auto fd = CreateMemfd(giant ? "vfiod-hugetlb-1G" : "vfiod-hugetlb-2M",
                        MFD_HUGETLB | (giant ? MFD_HUGE_1GB : MFD_HUGE_2MB));
  if (!fd) {
    fd.error().detail = HugePageName(huge_page_size) + " hugepages not supported by this kernel";
    return std::unexpected(fd.error());
  }
  parts.fd = std::move(*fd);
  VFIOD_TRY(Truncate(parts.fd, size));
  // A shared hugetlb mapping reserves its pages at mmap time: ENOMEM here
  // means the pool is short.
  auto memory =
      MapAligned(size, huge_page_size, PROT_READ | PROT_WRITE, MAP_SHARED, parts.fd.get(), 0);
  if (!memory) {
    return memory.error().code == ENOMEM ? PoolExhausted("mmap hugetlb", huge_page_size, size)
                                         : std::unexpected(memory.error());
  }
  parts.memory = std::move(*memory);
  VFIOD_TRY(Advise(parts.memory, MADV_DONTFORK, "MADV_DONTFORK"));
  // The mapping's policy steers faults through it; fallocate(2), which takes
  // the pages here (so a short pool is ENOSPC, never a SIGBUS), allocates
  // with the calling thread's policy instead: both must name the node.
  VFIOD_TRY(BindToNode(parts.memory.addr(), size, numa));
  {
    const ThreadNodePolicy placed = VFIOD_TRY(ThreadNodePolicy::Apply(numa));
    if (::fallocate(parts.fd.get(), 0, 0, static_cast<off_t>(size)) != 0) {
      if (errno == ENOSPC || errno == ENOMEM) {
        return PoolExhausted("fallocate hugetlb", huge_page_size, size);
      }
      return ErrnoError("fallocate hugetlb");
    }
  }
  VFIOD_TRY(PopulateWrite(parts.memory.addr(), size, huge_page_size));
  VFIOD_TRY(Seal(parts.fd));
  parts.vaddr = parts.memory.vaddr();
  parts.size = size;
  parts.page_size = huge_page_size;
  parts.alignment = huge_page_size;
  parts.numa_node = numa.node;
  return Backing(std::move(parts));
}

Result<Backing> CreateThpBacking(uint64_t size, bool shareable, const NumaPolicy& numa) {
  return CreateThpBacking(size, shareable, numa, InstalledHugeTmpfs());
}

Result<Backing> CreateThpBacking(uint64_t size, bool shareable, const NumaPolicy& numa,
                                 const HugeTmpfs* tmpfs) {
  return CreateSmallPageBacking(BackingKind::kThp, size, shareable, numa, tmpfs);
}

Result<Backing> CreatePagesBacking(uint64_t size, bool shareable, const NumaPolicy& numa) {
  return CreateSmallPageBacking(BackingKind::k4K, size, shareable, numa, nullptr);
}

}  // namespace vfiod::dma
