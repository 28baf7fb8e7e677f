#include "kernel/model_iommu.h"

#include <linux/vfio.h>

#include <bit>
#include <cerrno>
#include <cstring>
#include <span>

#include "kernel/cap_chain.h"

namespace vfiod::kernel {
namespace {

constexpr const char* kMapOp = "VFIO_IOMMU_MAP_DMA";
constexpr const char* kUnmapOp = "VFIO_IOMMU_UNMAP_DMA";
constexpr const char* kInfoOp = "VFIO_IOMMU_GET_INFO";
// DIRTY_BITMAP_SIZE_MAX of vfio_iommu_type1.c: INT_MAX pages, one bit each.
constexpr uint64_t kMaxDirtyBitmapSize = 0x10000000;

}  // namespace

ModelIommu::ModelIommu(const ModelKnobs& knobs, ModelPinner& pinner)
    : knobs_(knobs), pinner_(pinner), dma_avail_(knobs.dma_entry_limit) {}

ModelIommu::~ModelIommu() {
  while (!dmas_.empty()) {
    Remove(dmas_.begin());
  }
}

int ModelIommu::CheckExtension(const ModelIommu* iommu, unsigned long extension) {
  switch (extension) {
    case VFIO_TYPE1_IOMMU:
    case VFIO_TYPE1v2_IOMMU:
    case VFIO_TYPE1_NESTING_IOMMU:
    case VFIO_UNMAP_ALL:
      return 1;
    case VFIO_UPDATE_VADDR:
      return iommu != nullptr ? 1 : 0;  // no emulated (mdev) groups in the model
    default:
      return 0;  // VFIO_DMA_CC_IOMMU: the VM's intel-iommu has no snoop control
  }
}

Result<int> ModelIommu::Ioctl(unsigned long request, unsigned long arg) {
  // The ioctl ABI passes the argument as an integer that holds an address.
  void* p = reinterpret_cast<void*>(arg);  // NOLINT(performance-no-int-to-ptr)
  switch (request) {
    case VFIO_CHECK_EXTENSION:
      return CheckExtension(this, arg);
    case VFIO_IOMMU_GET_INFO:
      return GetInfo(p);
    case VFIO_IOMMU_MAP_DMA:
      return MapDma(p);
    case VFIO_IOMMU_UNMAP_DMA:
      return UnmapDma(p);
    default:
      return Fail(ENOTTY, "container ioctl", "not handled by the type1 model");
  }
}

std::vector<ModelEntry> ModelIommu::Entries() const {
  std::vector<ModelEntry> out;
  for (auto it = dmas_.begin(); it != dmas_.end(); ++it) {
    const Dma& d = it->second;
    out.push_back(
        {it->first, d.size, d.vaddr(), d.has(Dma::kRead), d.has(Dma::kWrite), Charged(it)});
  }
  return out;
}

uint64_t ModelIommu::Charged(DmaMap::const_iterator it) const {
  if (it->second.has(Dma::kChargedAll)) {
    return it->second.size;
  }
  auto partial = partial_charges_.find(it->first);
  return partial == partial_charges_.end() ? 0 : partial->second;
}

uint64_t ModelIommu::MinPage() const {
  return uint64_t{1} << std::countr_zero(knobs_.iova_pgsizes);
}

Result<int> ModelIommu::GetInfo(void* arg) const {
  constexpr size_t kMinsz = offsetof(vfio_iommu_type1_info, iova_pgsizes) + sizeof(uint64_t);
  constexpr size_t kCapsz = offsetof(vfio_iommu_type1_info, cap_offset) + sizeof(uint32_t);
  vfio_iommu_type1_info info{};
  std::memcpy(&info, arg, kMinsz);
  if (info.argsz < kMinsz) {
    return Fail(EINVAL, kInfoOp, "argsz too small");
  }
  size_t copy = kMinsz;
  if (info.argsz >= kCapsz) {
    copy = kCapsz;
    info.cap_offset = 0;
  }
  info.flags = VFIO_IOMMU_INFO_PGSIZES;
  info.iova_pgsizes = knobs_.iova_pgsizes;

  // Same order as vfio_iommu_type1_get_info(): migration, dma_avail, iova.
  CapChainBuilder caps;
  vfio_iommu_type1_info_cap_migration mig{};
  mig.pgsize_bitmap = knobs_.iova_pgsizes;
  mig.max_dirty_bitmap_size = kMaxDirtyBitmapSize;
  caps.Add(VFIO_IOMMU_TYPE1_INFO_CAP_MIGRATION, 1, CapBody(mig));
  vfio_iommu_type1_info_dma_avail avail{};
  avail.avail = dma_avail_;
  caps.Add(VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL, 1, CapBody(avail));
  vfio_iommu_type1_info_cap_iova_range ranges{};
  ranges.nr_iovas = static_cast<uint32_t>(knobs_.iova_ranges.size());
  std::vector<std::byte> body(CapBody(ranges).begin(), CapBody(ranges).end());
  for (const IovaRange& r : knobs_.iova_ranges) {
    vfio_iova_range one{r.start, r.last};
    body.insert(body.end(), ObjectBytes(one).begin(), ObjectBytes(one).end());
  }
  caps.Add(VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE, 1, body);

  info.flags |= VFIO_IOMMU_INFO_CAPS;
  caps.PlaceBehind(arg, sizeof info, info.argsz, info.cap_offset);
  std::memcpy(arg, &info, copy);
  return 0;
}

Result<int> ModelIommu::MapDma(void* arg) {
  vfio_iommu_type1_dma_map map{};
  std::memcpy(&map, arg, sizeof map);
  constexpr uint32_t kMask =
      VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE | VFIO_DMA_MAP_FLAG_VADDR;
  if (map.argsz < sizeof map || (map.flags & ~kMask) != 0) {
    return Fail(EINVAL, kMapOp, "bad argsz or flags");
  }
  VFIOD_TRY(DoMap(map.flags, map.vaddr, map.iova, map.size));
  return 0;
}

Result<void> ModelIommu::DoMap(uint32_t flags, uint64_t vaddr, uint64_t iova, uint64_t size) {
  bool set_vaddr = (flags & VFIO_DMA_MAP_FLAG_VADDR) != 0;
  bool read = (flags & VFIO_DMA_MAP_FLAG_READ) != 0;
  bool write = (flags & VFIO_DMA_MAP_FLAG_WRITE) != 0;
  if ((read || write) == set_vaddr) {
    return Fail(EINVAL, kMapOp, "access flags and FLAG_VADDR");
  }
  uint64_t page = MinPage();
  if (size == 0 || ((size | iova | vaddr) & (page - 1)) != 0) {
    return Fail(EINVAL, kMapOp, "size 0 or not aligned to the smallest IOMMU page");
  }
  if (iova + size - 1 < iova || vaddr + size - 1 < vaddr) {
    return Fail(EINVAL, kMapOp, "range wraps");
  }
  auto found = Find(iova, size);
  if (set_vaddr) {
    if (found == dmas_.end()) {
      return Fail(ENOENT, kMapOp, "no mapping to update");
    }
    if (!found->second.has(Dma::kVaddrInvalid) || found->first != iova ||
        found->second.size != size) {
      return Fail(EINVAL, kMapOp, "FLAG_VADDR must match one invalidated mapping");
    }
    found->second.vaddr_flags =
        vaddr | (found->second.vaddr_flags & Dma::kFlags & ~Dma::kVaddrInvalid);
    return Ok();
  }
  if (found != dmas_.end()) {
    return Fail(EEXIST, kMapOp, "overlaps an existing mapping");
  }
  if (dma_avail_ == 0) {
    return Fail(ENOSPC, kMapOp, "dma_entry_limit reached");
  }
  if (!InIovaRanges(iova, iova + size - 1)) {
    return Fail(EINVAL, kMapOp, "outside the IOMMU's IOVA ranges");
  }
  uint64_t charged = VFIOD_TRY(pinner_.Pin(vaddr, size, write));
  const uint64_t bits = (read ? Dma::kRead : 0) | (write ? Dma::kWrite : 0) |
                        (charged == size ? Dma::kChargedAll : 0);
  dmas_.emplace(iova, Dma{size, vaddr | bits});
  if (charged != 0 && charged != size) {
    partial_charges_.emplace(iova, charged);
  }
  --dma_avail_;
  return Ok();
}

Result<int> ModelIommu::UnmapDma(void* arg) {
  vfio_iommu_type1_dma_unmap unmap{};
  constexpr size_t kMinsz = offsetof(vfio_iommu_type1_dma_unmap, size) + sizeof(uint64_t);
  std::memcpy(&unmap, arg, kMinsz);
  constexpr uint32_t kMask =
      VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP | VFIO_DMA_UNMAP_FLAG_VADDR | VFIO_DMA_UNMAP_FLAG_ALL;
  if (unmap.argsz < kMinsz || (unmap.flags & ~kMask) != 0) {
    return Fail(EINVAL, kUnmapOp, "bad argsz or flags");
  }
  if (unmap.flags & VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP) {
    // Dirty tracking is not modelled; the kernel also refuses it while
    // tracking is off (EINVAL), which is the only state the model has.
    return Fail(EINVAL, kUnmapOp, "dirty page tracking is not started");
  }
  uint64_t unmapped = VFIOD_TRY(DoUnmap(unmap.flags, unmap.iova, unmap.size));
  unmap.size = unmapped;
  std::memcpy(arg, &unmap, kMinsz);
  return 0;
}

Result<uint64_t> ModelIommu::DoUnmap(uint32_t flags, uint64_t iova, uint64_t size) {
  bool all = (flags & VFIO_DMA_UNMAP_FLAG_ALL) != 0;
  bool invalidate = (flags & VFIO_DMA_UNMAP_FLAG_VADDR) != 0;
  uint64_t page = MinPage();
  if ((iova & (page - 1)) != 0) {
    return Fail(EINVAL, kUnmapOp, "iova not aligned to the smallest IOMMU page");
  }
  if (all) {
    if (iova != 0 || size != 0) {
      return Fail(EINVAL, kUnmapOp, "FLAG_ALL needs iova = size = 0");
    }
    size = UINT64_MAX;
  } else if (size == 0 || (size & (page - 1)) != 0 || iova + size - 1 < iova) {
    return Fail(EINVAL, kUnmapOp, "size 0, unaligned or wrapping");
  }
  uint64_t last = iova + size - 1;
  if (!all) {  // type1v2: never split a mapping
    auto first = Find(iova, 1);
    if (first != dmas_.end() && first->first != iova) {
      return Fail(EINVAL, kUnmapOp, "would split the mapping at the start");
    }
    auto end = Find(last, 0);
    if (end != dmas_.end() && end->first + end->second.size - 1 != last) {
      return Fail(EINVAL, kUnmapOp, "would split the mapping at the end");
    }
  }
  auto it = dmas_.lower_bound(iova);
  if (invalidate) {
    for (auto v = it; v != dmas_.end() && v->first <= last; ++v) {
      if (v->second.has(Dma::kVaddrInvalid)) {
        return Fail(EINVAL, kUnmapOp, "vaddr already invalidated");
      }
    }
  }
  uint64_t unmapped = 0;
  while (it != dmas_.end() && it->first <= last) {
    unmapped += it->second.size;
    if (invalidate) {
      it->second.vaddr_flags |= Dma::kVaddrInvalid;
      ++it;
    } else {
      auto next = std::next(it);
      Remove(it);
      it = next;
    }
  }
  return unmapped;
}

ModelIommu::DmaMap::iterator ModelIommu::Find(uint64_t start, uint64_t size) {
  // Intervals are disjoint, so the candidate is the last one starting at or
  // before the end of the query, provided it reaches the query's start.
  uint64_t last = size == 0 ? start : start + size - 1;
  auto it = dmas_.upper_bound(last);
  if (it == dmas_.begin()) {
    return dmas_.end();
  }
  --it;
  uint64_t dma_last = it->first + it->second.size - 1;
  if (dma_last < start) {
    return dmas_.end();
  }
  // Several may overlap a wide query; report the lowest one, like the rbtree walk.
  auto low = dmas_.lower_bound(start);
  if (low != dmas_.begin()) {
    auto prev = std::prev(low);
    if (prev->first + prev->second.size - 1 >= start) {
      return prev;
    }
  }
  return low;
}

bool ModelIommu::InIovaRanges(uint64_t first, uint64_t last) const {
  if (knobs_.iova_ranges.empty()) {
    return true;
  }
  for (const IovaRange& r : knobs_.iova_ranges) {
    if (first >= r.start && last <= r.last) {
      return true;
    }
  }
  return false;
}

void ModelIommu::Remove(DmaMap::iterator it) {
  pinner_.Unpin(Charged(it));
  partial_charges_.erase(it->first);
  dmas_.erase(it);
  ++dma_avail_;
}

}  // namespace vfiod::kernel
