// Test memory of each kind the daemon serves, for the guest tests: anonymous
// 4K pages, hugetlb 2 MiB and 1 GiB pages (memfd), and transparent huge pages.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "proto/result.h"

namespace vfiod::testing {

enum class MemoryKind { kAnon4K, kHugetlb2M, kHugetlb1G, kThp };

[[nodiscard]] std::string ToString(MemoryKind kind);

/// A populated, private-to-the-test mapping of `size` bytes. Move-only; unmaps
/// on destruction. For kThp the mapping is 2 MiB aligned and madvise'd
/// MADV_HUGEPAGE before being touched; kAnon4K is MADV_NOHUGEPAGE.
class TestMemory {
 public:
  /// ENOMEM: no huge pages of that size are free (check the reservation).
  [[nodiscard]] static Result<TestMemory> Allocate(MemoryKind kind, size_t size);

  TestMemory(TestMemory&& other) noexcept;
  TestMemory& operator=(TestMemory&&) = delete;
  TestMemory(const TestMemory&) = delete;
  TestMemory& operator=(const TestMemory&) = delete;
  ~TestMemory();

  [[nodiscard]] std::byte* data() const { return data_; }
  [[nodiscard]] size_t size() const { return size_; }
  [[nodiscard]] uint64_t vaddr() const { return reinterpret_cast<uint64_t>(data_); }
  /// For kThp: kB of this process's memory that is backed by THP (smaps_rollup).
  [[nodiscard]] static uint64_t AnonHugePagesKb();

 private:
  TestMemory(std::byte* map_base, size_t map_size, std::byte* data, size_t size)
      : map_base_(map_base), map_size_(map_size), data_(data), size_(size) {}

  std::byte* map_base_ = nullptr;  // what to munmap (may be larger, for alignment)
  size_t map_size_ = 0;
  std::byte* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace vfiod::testing
