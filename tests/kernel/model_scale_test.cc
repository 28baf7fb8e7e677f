// The model at the type1 entry limit: 65535 MAP_DMA of 4 KiB slices of one
// shared memfd mapping, as a client of vfiod mapping small buffers would
// issue. Checks the model's answers, not its speed (no timing assertions);
// the test exists so that a per-call cost that grows with the process's
// mappings shows up as a slow test rather than a slow daemon.
#include <sys/mman.h>
#include <unistd.h>

#include "model_fixture.h"
#include "proto/unique_fd.h"

namespace vfiod::kernel::testing {
namespace {

using ScaleModel = ModelFixture;

constexpr uint32_t kEntryLimit = 65535;

/// A shared memfd mapping of `size` bytes (RAII); ok() is false on failure.
class SharedMemfd {
 public:
  explicit SharedMemfd(size_t size) : size_(size) {
    fd_ = UniqueFd(::memfd_create("model-scale", MFD_CLOEXEC));
    if (!fd_.valid() || ::ftruncate(fd_.get(), static_cast<off_t>(size)) != 0) {
      return;
    }
    void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd_.get(), 0);
    addr_ = p == MAP_FAILED ? nullptr : p;
  }
  SharedMemfd(const SharedMemfd&) = delete;
  SharedMemfd& operator=(const SharedMemfd&) = delete;
  ~SharedMemfd() {
    if (addr_ != nullptr) {
      ::munmap(addr_, size_);
    }
  }
  [[nodiscard]] bool ok() const { return addr_ != nullptr; }
  [[nodiscard]] uint64_t vaddr() const { return reinterpret_cast<uint64_t>(addr_); }

 private:
  UniqueFd fd_;
  void* addr_ = nullptr;
  size_t size_;
};

TEST_F(ScaleModel, EntryLimitOfFourKibSlicesOfOneMemfdMapping) {
  SharedMemfd mem(256ULL << 20);
  ASSERT_TRUE(mem.ok());
  const uint64_t iova_base = 1ULL << 32;
  for (uint32_t i = 0; i < kEntryLimit; ++i) {
    auto r = Map(mem.vaddr() + i * kPage, iova_base + i * kPage, kPage);
    ASSERT_TRUE(r) << "mapping " << i << ": " << r.error().message();
  }
  EXPECT_EQ(MappingCount(), kEntryLimit);
  EXPECT_EQ(k_.LockedBytes(), kEntryLimit * kPage);
  // The last slice of the memfd is mapped, but the entry limit is reached.
  EXPECT_EQ(Errno(Map(mem.vaddr() + kEntryLimit * kPage, iova_base + kEntryLimit * kPage, kPage)),
            ENOSPC);
  auto info = GetIommuInfo(k_, container_.get());
  ASSERT_TRUE(info) << info.error().message();
  EXPECT_EQ(info->dma_avail, 0u);
  auto all = UnmapAllDma(k_, container_.get());
  ASSERT_TRUE(all) << all.error().message();
  EXPECT_EQ(*all, kEntryLimit * kPage);
  EXPECT_EQ(k_.LockedBytes(), 0u);
}

}  // namespace
}  // namespace vfiod::kernel::testing
