// The process side of the model: what pinning user memory checks (the
// mappings and their permissions, as get_user_pages() does) and charges
// (RLIMIT_MEMLOCK, except for device MMIO), and the device mmaps.
//
// How the range is checked. The kernel's MAP_DMA pins each page with
// pin_user_pages(), FOLL_WRITE when the device may write: that faults the
// pages in and fails (EFAULT) on a hole, on a mapping without the access, or
// on a page that cannot be faulted in (SIGBUS). madvise(MADV_POPULATE_READ /
// MADV_POPULATE_WRITE, Linux 5.14) runs the same GUP fault-in on our own
// range without touching the data: it costs what the real pin costs (per
// page, nothing per mapping of the process), where parsing /proc/self/maps
// costs per VMA of the process on every call, which made a daemon holding
// thousands of mappings quadratic. Its failures are ENOMEM (a hole) and
// EFAULT (SIGBUS/SIGSEGV), both EFAULT here; EINVAL means "permissions or a
// VM_IO/VM_PFNMAP mapping" (or an older kernel), which pinning treats
// differently (PFN maps are accepted through follow_fault_pfn), so only then
// the exact answer comes from /proc/self/maps. A cache of that parse was the
// other option, but mappings made and changed outside the seam (backings,
// mprotect) would make it stale without notice.
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <string>
#include <string_view>

#include "kernel/model_state.h"
#include "proto/unique_fd.h"

namespace vfiod::kernel {
namespace {

constexpr const char* kOp = "VFIO_IOMMU_MAP_DMA";

Result<std::string> ReadSelfMaps() {
  int fd = ::open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return ErrnoError("open /proc/self/maps");
  }
  UniqueFd owner(fd);
  std::string text;
  char chunk[16384];
  for (;;) {
    ssize_t n = ::read(fd, chunk, sizeof chunk);
    if (n < 0) {
      return ErrnoError("read /proc/self/maps");
    }
    if (n == 0) {
      return text;
    }
    text.append(chunk, static_cast<size_t>(n));
  }
}

struct Vma {
  uint64_t start = 0;
  uint64_t end = 0;
  bool read = false;
  bool write = false;
};

/// Parses "start-end perms ..." (hex addresses); false on a malformed line.
bool ParseVma(std::string_view line, Vma* vma) {
  const char* p = line.data();
  const char* end = p + line.size();
  auto r1 = std::from_chars(p, end, vma->start, 16);
  if (r1.ec != std::errc() || r1.ptr == end || *r1.ptr != '-') {
    return false;
  }
  auto r2 = std::from_chars(r1.ptr + 1, end, vma->end, 16);
  if (r2.ec != std::errc() || end - r2.ptr < 3) {
    return false;
  }
  vma->read = r2.ptr[1] == 'r';
  vma->write = r2.ptr[2] == 'w';
  return true;
}

/// The /proc/self/maps check: every byte mapped, readable, and writable too
/// with `write`. EFAULT otherwise.
Result<void> CheckSelfMaps(uint64_t vaddr, uint64_t size, bool write) {
  std::string maps = VFIOD_TRY(ReadSelfMaps());
  uint64_t cursor = vaddr;  // first byte not yet found mapped with the right access
  const uint64_t last = vaddr + size - 1;
  std::string_view rest = maps;
  while (!rest.empty() && cursor <= last && cursor >= vaddr) {
    size_t nl = rest.find('\n');
    std::string_view line = rest.substr(0, nl);
    rest = nl == std::string_view::npos ? std::string_view() : rest.substr(nl + 1);
    Vma vma;
    if (!ParseVma(line, &vma) || vma.end <= cursor) {
      continue;
    }
    if (vma.start > cursor) {
      break;  // a hole
    }
    if (!vma.read || (write && !vma.write)) {
      return Fail(EFAULT, kOp, write ? "memory is not readable and writable" : "not readable");
    }
    cursor = vma.end;  // may wrap to 0 at the top of the address space
  }
  if (cursor <= last && cursor >= vaddr) {
    return Fail(EFAULT, kOp, "vaddr range is not mapped in this process");
  }
  return Ok();
}

/// Faults the range in as pinning does (see the top of the file).
Result<void> FaultIn(uint64_t vaddr, uint64_t size, bool write) {
  // madvise takes the address as a pointer; vaddr is the uAPI's integer.
  void* addr = reinterpret_cast<void*>(vaddr);  // NOLINT(performance-no-int-to-ptr)
  int rc = 0;
  do {
    rc = ::madvise(addr, size, write ? MADV_POPULATE_WRITE : MADV_POPULATE_READ);
  } while (rc != 0 && errno == EINTR);
  if (rc == 0) {
    return Ok();
  }
  if (errno == EINVAL) {
    return CheckSelfMaps(vaddr, size, write);
  }
  return Fail(EFAULT, kOp,
              errno == ENOMEM ? "vaddr range is not mapped in this process"
                              : "a page of the range cannot be faulted in");
}

}  // namespace

Result<uint64_t> ModelState::Pin(uint64_t vaddr, uint64_t size, bool write) {
  VFIOD_TRY(FaultIn(vaddr, size, write));
  uint64_t charged = size - MmioBytes(vaddr, size);
  if (charged > knobs.memlock_limit || locked_bytes > knobs.memlock_limit - charged) {
    return Fail(ENOMEM, kOp, "RLIMIT_MEMLOCK exceeded");
  }
  locked_bytes += charged;
  return charged;
}

uint64_t ModelState::MmioBytes(uint64_t start, uint64_t size) const {
  uint64_t end = start + size;
  uint64_t total = 0;
  for (const auto& [s, e] : mmio) {
    uint64_t lo = std::max(s, start);
    uint64_t hi = std::min(e, end);
    if (lo < hi) {
      total += hi - lo;
    }
  }
  return total;
}

void ModelState::RemoveMmio(uint64_t start, uint64_t size) {
  uint64_t end = start + size;
  std::vector<std::pair<uint64_t, uint64_t>> keep;
  for (auto it = mmio.begin(); it != mmio.end();) {
    auto [s, e] = *it;
    if (s < end && e > start) {
      if (s < start) {
        keep.emplace_back(s, start);
      }
      if (e > end) {
        keep.emplace_back(end, e);
      }
      it = mmio.erase(it);
    } else {
      ++it;
    }
  }
  for (auto [s, e] : keep) {
    mmio[s] = e;
  }
}

}  // namespace vfiod::kernel
