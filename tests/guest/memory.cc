#include "memory.h"

#include <linux/memfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <utility>

#include "proto/unique_fd.h"

namespace vfiod::testing {
namespace {

constexpr size_t k2M = size_t{2} << 20;

}  // namespace

std::string ToString(MemoryKind kind) {
  switch (kind) {
    case MemoryKind::kAnon4K:
      return "anon4k";
    case MemoryKind::kHugetlb2M:
      return "hugetlb2m";
    case MemoryKind::kHugetlb1G:
      return "hugetlb1g";
    case MemoryKind::kThp:
      return "thp";
  }
  return "unknown";
}

Result<TestMemory> TestMemory::Allocate(MemoryKind kind, size_t size) {
  if (kind == MemoryKind::kHugetlb2M || kind == MemoryKind::kHugetlb1G) {
    unsigned flags =
        MFD_CLOEXEC | MFD_HUGETLB | (kind == MemoryKind::kHugetlb2M ? MFD_HUGE_2MB : MFD_HUGE_1GB);
    UniqueFd fd(::memfd_create(("vfiod-test-" + ToString(kind)).c_str(), flags));
    if (!fd) {
      return ErrnoError("memfd_create " + ToString(kind));
    }
    if (::ftruncate(fd.get(), static_cast<off_t>(size)) != 0) {
      return ErrnoError("ftruncate " + ToString(kind));
    }
    void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd.get(), 0);
    if (p == MAP_FAILED) {
      return ErrnoError("mmap " + ToString(kind) + " (are huge pages reserved?)");
    }
    auto* b = static_cast<std::byte*>(p);
    std::memset(b, 0, size);  // touch: a hugetlb fault with no free page is SIGBUS, not ENOMEM
    return TestMemory(b, size, b, size);
  }
  // Anonymous: over-allocate by 2 MiB so the THP buffer can start 2 MiB aligned.
  size_t map_size = size + k2M;
  void* p = ::mmap(nullptr, map_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) {
    return ErrnoError("mmap anonymous");
  }
  auto* base = static_cast<std::byte*>(p);
  auto addr = reinterpret_cast<uintptr_t>(base);
  auto* data = reinterpret_cast<std::byte*>((addr + k2M - 1) & ~(uintptr_t{k2M} - 1));
  int advice = kind == MemoryKind::kThp ? MADV_HUGEPAGE : MADV_NOHUGEPAGE;
  if (::madvise(data, size, advice) != 0) {
    int err = errno;
    ::munmap(base, map_size);
    return ErrnoError("madvise " + ToString(kind), err);
  }
  std::memset(data, 0, size);  // touch every page now, so pinning finds them present
  return TestMemory(base, map_size, data, size);
}

TestMemory::TestMemory(TestMemory&& other) noexcept
    : map_base_(std::exchange(other.map_base_, nullptr)),
      map_size_(std::exchange(other.map_size_, 0)),
      data_(std::exchange(other.data_, nullptr)),
      size_(std::exchange(other.size_, 0)) {}

TestMemory::~TestMemory() {
  if (map_base_ != nullptr) {
    ::munmap(map_base_, map_size_);
  }
}

uint64_t TestMemory::AnonHugePagesKb() {
  std::ifstream in("/proc/self/smaps_rollup");
  std::string key;
  uint64_t kb = 0;
  while (in >> key) {
    if (key == "AnonHugePages:") {
      in >> kb;
      return kb;
    }
    in.ignore(4096, '\n');
  }
  return 0;
}

}  // namespace vfiod::testing
