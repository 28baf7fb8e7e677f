#include "vfio/region.h"

#include <sys/mman.h>
#include <unistd.h>

#include <bit>
#include <cstdio>
#include <utility>

namespace vfiod::vfio {
namespace {

constexpr uint64_t kMaxNaturalAlignment = uint64_t{1} << 30;

uint64_t PageSize() { return static_cast<uint64_t>(::sysconf(_SC_PAGESIZE)); }

uint64_t RoundUp(uint64_t v, uint64_t align) { return (v + align - 1) & ~(align - 1); }

// Reserves `size` bytes of address space aligned to `align`: over-reserve by
// `align`, then give back the misaligned head and the tail. The reservation is
// anonymous PROT_NONE memory, not a VFIO fd, so it does not use the seam.
Result<std::byte*> ReserveAligned(uint64_t size, uint64_t align) {
  uint64_t span = size + align;
  void* raw = ::mmap(nullptr, span, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (raw == MAP_FAILED) {
    return ErrnoError("reserve address range for region mmap");
  }
  auto* base = static_cast<std::byte*>(raw);
  const auto start = reinterpret_cast<uintptr_t>(raw);
  const uint64_t head = RoundUp(start, align) - start;  // < align, so the tail is > 0
  if (head > 0) {
    ::munmap(base, head);
  }
  ::munmap(base + head + size, span - (head + size));
  return base + head;
}

}  // namespace

uint64_t NaturalAlignment(uint64_t size) {
  uint64_t a = std::bit_ceil(size == 0 ? 1 : size);
  a = std::min(a, kMaxNaturalAlignment);
  return std::max(a, PageSize());
}

Result<RegionMapping> RegionMapping::Map(std::shared_ptr<Device> device, uint32_t index,
                                         RegionMapOptions options) {
  if (!device) {
    return Fail(EINVAL, "mmap device region", "no device");
  }
  kernel::RegionInfo info = VFIOD_TRY(device->RegionInfo(index));
  std::string what = "mmap region " + std::to_string(index) + " of " + device->name();
  if (!info.mmappable() || info.size == 0) {
    return Fail(EINVAL, what, "the region is not mmap-able");
  }
  uint64_t align = options.alignment == 0 ? NaturalAlignment(info.size) : options.alignment;
  if (!std::has_single_bit(align) || align < PageSize()) {
    return Fail(EINVAL, what, "alignment must be a power of two of at least a page");
  }
  RegionMapping m;
  m.device_ = std::move(device);
  m.info_ = info;
  m.size_ = RoundUp(info.size, PageSize());
  m.areas_ = info.sparse_mmap.value_or(std::vector<kernel::SparseArea>{{0, info.size}});
  m.base_ = VFIOD_TRY(ReserveAligned(m.size_, align));
  int prot = PROT_READ | (options.write && info.writable() ? PROT_WRITE : 0);
  kernel::Kernel& k = m.device_->kernel();
  for (const kernel::SparseArea& area : m.areas_) {
    if (area.size == 0) {
      continue;
    }
    if (area.offset + area.size > m.size_ || area.offset % PageSize() != 0) {
      return Fail(EINVAL, what, "sparse area outside the region or misaligned");
    }
    void* want = m.base_ + area.offset;
    void* got = VFIOD_TRY(k.mmap(want, area.size, prot, MAP_SHARED | MAP_FIXED, m.device_->fd(),
                                 static_cast<off_t>(info.offset + area.offset)));
    if (got != want) {
      return Fail(EFAULT, what, "the kernel mapped the area elsewhere despite MAP_FIXED");
    }
  }
  return m;
}

RegionMapping::RegionMapping(RegionMapping&& other) noexcept
    : device_(std::move(other.device_)),
      info_(std::move(other.info_)),
      areas_(std::move(other.areas_)),
      base_(std::exchange(other.base_, nullptr)),
      size_(std::exchange(other.size_, 0)) {}

RegionMapping& RegionMapping::operator=(RegionMapping&& other) noexcept {
  if (this != &other) {
    Release();
    device_ = std::move(other.device_);
    info_ = std::move(other.info_);
    areas_ = std::move(other.areas_);
    base_ = std::exchange(other.base_, nullptr);
    size_ = std::exchange(other.size_, 0);
  }
  return *this;
}

RegionMapping::~RegionMapping() { Release(); }

void RegionMapping::Release() {
  if (base_ == nullptr) {
    return;
  }
  // One munmap over the whole reservation removes the device areas and the
  // PROT_NONE holes together, so no gap is ever left for another mmap to take.
  auto unmapped = device_->kernel().munmap(std::exchange(base_, nullptr), size_);
  if (!unmapped) {
    (void)std::fprintf(stderr, "vfiod: %s\n", unmapped.error().message().c_str());
  }
  size_ = 0;
}

bool RegionMapping::Accessible(uint64_t offset, uint64_t len) const {
  for (const kernel::SparseArea& a : areas_) {
    if (offset >= a.offset && len <= a.size && offset - a.offset <= a.size - len) {
      return true;
    }
  }
  return false;
}

}  // namespace vfiod::vfio
