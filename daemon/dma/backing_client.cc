// AdoptClientFd: the checks that make a client's fd safe to pin and share.
#include <fcntl.h>
#include <linux/magic.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/vfs.h>

#include <algorithm>

#include "dma/backing.h"

namespace vfiod::dma {
namespace {

constexpr const char* kOp = "adopt client fd";

// The file's page size: 4 KiB on tmpfs, the huge page size on hugetlbfs.
Result<uint64_t> CheckFileSystem(int fd) {
  struct statfs fs {};
  if (::fstatfs(fd, &fs) != 0) {
    return ErrnoError(std::string(kOp) + ": fstatfs");
  }
  if (fs.f_type == TMPFS_MAGIC) {
    return kPage4K;
  }
  if (fs.f_type == HUGETLBFS_MAGIC) {
    return static_cast<uint64_t>(fs.f_bsize);
  }
  return Fail(
      EINVAL, kOp,
      "fd is not a memfd or hugetlbfs file (file system magic " + std::to_string(fs.f_type) + ")");
}

Result<uint64_t> CheckFile(int fd) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    return ErrnoError(std::string(kOp) + ": fstat");
  }
  if (!S_ISREG(st.st_mode)) {
    return Fail(EINVAL, kOp, "fd is not a regular file");
  }
  const int mode = ::fcntl(fd, F_GETFL);
  if (mode < 0) {
    return ErrnoError(std::string(kOp) + ": fcntl(F_GETFL)");
  }
  if ((mode & O_ACCMODE) != O_RDWR) {
    return Fail(EINVAL, kOp, "fd must be open read-write (devices write into DMA memory)");
  }
  return static_cast<uint64_t>(st.st_size);
}

// Seals the file against shrinking where its sealing is open (a memfd made
// with MFD_ALLOW_SEALING): the client then cannot take pages from under
// vfiod's view. A file whose sealing is locked (F_SEAL_SEAL: any file opened
// by path on tmpfs or hugetlbfs, as DPDK and QEMU make them, or a memfd made
// without MFD_ALLOW_SEALING) is taken unsealed. That is safe because vfiod
// never touches the memory of its view (no populate, no read, no write: the
// pin in MAP_DMA faults the pages in, and contiguity comes from pagemap), so
// a truncation or a punched hole cannot fault vfiod: pinned pages stay with
// the device until vfiod unmaps them, and a later pin of a page the client
// dropped fails inside MAP_DMA (EFAULT, an error to that request, never a
// SIGBUS: mm/gup.c turns VM_FAULT_SIGBUS into -EFAULT).
Result<void> SealShrinkIfOpen(int fd) {
  const int seals = ::fcntl(fd, F_GET_SEALS);
  if (seals < 0) {
    return ErrnoError(std::string(kOp) + ": fcntl(F_GET_SEALS)", errno,
                      "fd does not support sealing: pass a memfd or a tmpfs/hugetlbfs file");
  }
  if ((seals & (F_SEAL_SHRINK | F_SEAL_SEAL)) != 0) {
    return Ok();  // sealed already, or locked: taken as it is (above)
  }
  if (::fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK) != 0) {
    return ErrnoError(std::string(kOp) + ": fcntl(F_ADD_SEALS)");
  }
  return Ok();
}

Result<void> CheckRange(uint64_t offset, uint64_t length, uint64_t page, uint64_t file_size) {
  if (length == 0 || !IsAligned(offset, page) || !IsAligned(length, page)) {
    return Fail(EINVAL, kOp,
                "offset and length must be non-zero multiples of the file's page size " +
                    std::to_string(page));
  }
  if (offset > file_size || length > file_size - offset) {
    return Fail(EINVAL, kOp,
                "range [" + std::to_string(offset) + ", +" + std::to_string(length) +
                    ") is past the end of the file (size " + std::to_string(file_size) + ")");
  }
  return Ok();
}

}  // namespace

Result<Backing> AdoptClientFd(UniqueFd fd, uint64_t offset, uint64_t length) {
  if (!fd.valid() || ::fcntl(fd.get(), F_GETFD) < 0) {
    return Fail(EBADF, kOp, "not an open file descriptor");
  }
  const uint64_t file_size = VFIOD_TRY(CheckFile(fd.get()));
  const uint64_t page = VFIOD_TRY(CheckFileSystem(fd.get()));
  VFIOD_TRY(SealShrinkIfOpen(fd.get()));
  // Checked after sealing (when the file could be sealed, its size can no
  // longer drop beneath the check; when not, a later shrink is harmless).
  VFIOD_TRY(CheckRange(offset, length, page, file_size));
  BackingParts parts;
  parts.kind = BackingKind::kMemfd;
  // The view sits where the file's largest folios can be mapped whole: a
  // huge page boundary for hugetlbfs; for shmem, the view's vaddr congruent
  // to the file offset mod 2 MiB, so a THP is mapped by one PMD here and the
  // engine can place IOVAs for it without reading pagemap.
  const uint64_t align = page > kPage4K ? page : kPage2M;
  auto memory = MapAligned(length, align, PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(),
                           static_cast<off_t>(offset), offset % align);
  if (!memory) {
    // hugetlbfs reserves the pages of the file's holes at mmap time.
    return page > kPage4K && memory.error().code == ENOMEM
               ? Fail(ENOMEM, kOp,
                      "the hugetlbfs file has holes and the " + std::to_string(page >> 10) +
                          " kB hugepage pool cannot fill them: grow the pool or fallocate the "
                          "file")
               : std::unexpected(memory.error());
  }
  parts.memory = std::move(*memory);
  if (::madvise(parts.memory.addr(), length, MADV_DONTFORK) != 0) {
    return ErrnoError("madvise(MADV_DONTFORK)");
  }
  // Not populated: vfiod never touches the memory, and MAP_DMA's pinning
  // faults the pages in. A shmem hole is simply allocated then (as THP when
  // shmem_enabled allows "advise": hence the advice, best effort). A
  // hugetlbfs hole was reserved by the mmap above; should the pool still
  // fail, the fault inside pin_user_pages becomes EFAULT or ENOMEM from
  // MAP_DMA (mm/gup.c vm_fault_to_errno), never a SIGBUS to vfiod.
  if (page == kPage4K) {
    (void)::madvise(parts.memory.addr(), length, MADV_HUGEPAGE);  // EINVAL without THP
  }
  parts.fd = std::move(fd);
  parts.fd_offset = offset;
  parts.vaddr = parts.memory.vaddr();
  parts.size = length;
  parts.page_size = page;
  parts.alignment = std::min(align, parts.vaddr & (~parts.vaddr + 1));  // lowest set bit
  return Backing(std::move(parts));
}

Result<Backing> ReopenBacking(UniqueFd fd, BackingKind kind) {
  constexpr const char* kReopenOp = "reopen stored backing";
  if (!fd.valid() || ::fcntl(fd.get(), F_GETFD) < 0) {
    return Fail(EBADF, kReopenOp, "not an open file descriptor");
  }
  if (kind == BackingKind::kBar) {
    return Fail(EINVAL, kReopenOp, "a device BAR has no stored file");
  }
  const uint64_t size = VFIOD_TRY(CheckFile(fd.get()));
  const uint64_t page = VFIOD_TRY(CheckFileSystem(fd.get()));
  if (size == 0 || !IsAligned(size, page)) {
    return Fail(EINVAL, kReopenOp, "the file is empty or not a multiple of its page size");
  }
  const uint64_t align = page > kPage4K ? page : kPage2M;
  // Not populated, no advice: the pages are there, pinned by the kernel's
  // entries, and vfiod never touches them.
  BackingParts parts;
  parts.kind = kind;
  parts.memory =
      VFIOD_TRY(MapAligned(size, align, PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(), 0));
  if (::madvise(parts.memory.addr(), size, MADV_DONTFORK) != 0) {
    return ErrnoError("madvise(MADV_DONTFORK)");
  }
  parts.fd = std::move(fd);
  parts.vaddr = parts.memory.vaddr();
  parts.size = size;
  parts.page_size = page;
  parts.alignment = std::min(align, parts.vaddr & (~parts.vaddr + 1));
  return Backing(std::move(parts));
}

}  // namespace vfiod::dma
