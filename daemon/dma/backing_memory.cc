#include "dma/backing_memory.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>

namespace vfiod::dma {

MappedMemory& MappedMemory::operator=(MappedMemory&& other) noexcept {
  if (this != &other) {
    Reset();
    addr_ = std::exchange(other.addr_, nullptr);
    len_ = std::exchange(other.len_, 0);
  }
  return *this;
}

void MappedMemory::Reset() {
  if (addr_ != nullptr) {
    // munmap of a range we mapped ourselves cannot fail short of a bug.
    ::munmap(std::exchange(addr_, nullptr), std::exchange(len_, 0));
  }
}

Result<MappedMemory> MapAligned(size_t len, size_t align, int prot, int flags, int fd, off_t off,
                                uint64_t phase) {
  const auto base_page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
  if (len == 0 || !IsPowerOfTwo(align) || align < base_page || len > SIZE_MAX - align ||
      !IsAligned(phase, base_page)) {
    return Fail(EINVAL, "mmap", "length 0, alignment not a power of two or phase not page aligned");
  }
  const size_t span = len + align;
  void* raw = ::mmap(nullptr, span, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (raw == MAP_FAILED) {
    return ErrnoError("mmap (reserve address space)");
  }
  // Offsets into the reservation, so every address is derived from `raw`.
  const auto raw_start = reinterpret_cast<uint64_t>(raw);
  const size_t head = (phase - raw_start) & (uint64_t{align} - 1);  // start % align == phase
  std::byte* start = static_cast<std::byte*>(raw) + head;
  void* got = ::mmap(start, len, prot, flags | MAP_FIXED, fd, off);
  if (got == MAP_FAILED) {
    const int err = errno;
    ::munmap(raw, span);
    return ErrnoError("mmap", err);
  }
  // Give back the slop on both sides of the aligned mapping.
  if (head > 0) {
    ::munmap(raw, head);
  }
  if (head < align) {
    ::munmap(start + len, align - head);
  }
  return MappedMemory(got, len);
}

Result<void> PopulateWrite(void* addr, size_t len, size_t page_size) {
  if (::madvise(addr, len, MADV_POPULATE_WRITE) == 0) {
    return Ok();
  }
  if (errno != EINVAL) {
    return ErrnoError("madvise(MADV_POPULATE_WRITE)");
  }
  // Kernel older than 5.14: touch each page with an add of zero, which writes
  // without changing what another mapper of the same file put there.
  auto* bytes = static_cast<unsigned char*>(addr);
  for (size_t at = 0; at < len; at += page_size) {
    __atomic_fetch_add(bytes + at, 0, __ATOMIC_RELAXED);
  }
  return Ok();
}

}  // namespace vfiod::dma
