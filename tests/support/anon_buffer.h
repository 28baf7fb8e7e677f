// Anonymous memory for tests that map DMA: private, read-write, populated.
#pragma once

#include <sys/mman.h>

#include <cstddef>
#include <cstdint>

namespace vfiod::testing {

/// Anonymous memory, MAP_POPULATE (RAII). ok() is false when mmap failed.
class AnonBuffer {
 public:
  explicit AnonBuffer(size_t size) : size_(size) {
    void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    addr_ = p == MAP_FAILED ? nullptr : p;
  }
  AnonBuffer(const AnonBuffer&) = delete;
  AnonBuffer& operator=(const AnonBuffer&) = delete;
  AnonBuffer(AnonBuffer&&) = delete;
  AnonBuffer& operator=(AnonBuffer&&) = delete;
  ~AnonBuffer() {
    if (addr_ != nullptr) {
      ::munmap(addr_, size_);
    }
  }
  [[nodiscard]] bool ok() const { return addr_ != nullptr; }
  [[nodiscard]] uint64_t vaddr() const { return reinterpret_cast<uint64_t>(addr_); }
  [[nodiscard]] void* get() const { return addr_; }

 private:
  void* addr_ = nullptr;
  size_t size_;
};

}  // namespace vfiod::testing
