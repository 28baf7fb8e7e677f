#include "dma/engine.h"

#include <algorithm>
#include <cstdio>
#include <set>
#include <span>
#include <string>

#include "proto/hex.h"

namespace vfiod::dma {
namespace {

// The folio size ScanContiguity may assume for the whole of a backing, or 0.
uint64_t KnownFolioSize(const Backing& backing) {
  switch (backing.kind()) {
    case BackingKind::kHugetlb2M:
    case BackingKind::kHugetlb1G:
      return backing.page_size();
    case BackingKind::kPages4K:
      return kPage4K;
    case BackingKind::kClientFd:  // hugetlbfs: its page size; shmem may hold THP
      return backing.page_size() > kPage4K ? backing.page_size() : 0;
    case BackingKind::kThp:
    case BackingKind::kDeviceBar:
      return 0;
  }
  return 0;
}

// The largest IOMMU page size no bigger than `limit` (at least the granule).
uint64_t LargestPageAtMost(uint64_t pgsizes, uint64_t limit) {
  uint64_t best = pgsizes & (~pgsizes + 1);  // lowest set bit: the granule
  for (uint64_t page = best; page != 0 && page <= limit && page <= kPage1G; page <<= 1) {
    if ((pgsizes & page) != 0) {
      best = page;
    }
  }
  return best;
}

}  // namespace

DmaSpace::DmaSpace(std::shared_ptr<vfio::Container> container, EngineConfig config,
                   std::unique_ptr<PageInfoReader> reader, IovaAllocator allocator,
                   std::optional<uint32_t> entry_limit)
    : container_(std::move(container)),
      config_(config),
      reader_(std::move(reader)),
      allocator_(std::move(allocator)),
      entry_limit_(entry_limit) {}

Result<std::unique_ptr<DmaSpace>> DmaSpace::Create(std::shared_ptr<vfio::Container> container,
                                                   EngineConfig config,
                                                   std::unique_ptr<PageInfoReader> reader) {
  if (!container || !container->iommu_set()) {
    return Fail(EINVAL, "create DMA space", "the container has no IOMMU set: attach a group first");
  }
  const kernel::IommuInfo info = VFIOD_TRY(container->IommuInfo());
  IovaAllocator allocator = VFIOD_TRY(IovaAllocator::Create(info.iova_ranges, info.iova_pgsizes));
  if (!reader) {
    reader = VFIOD_TRY(ProcPageInfoReader::Open());
  }
  return std::unique_ptr<DmaSpace>(new DmaSpace(std::move(container), config, std::move(reader),
                                                std::move(allocator), info.dma_avail));
}

DmaSpace::~DmaSpace() {
  if (shadow_.empty()) {
    return;
  }
  // A destructor can only report, and only as far as stderr lets it.
  if (running_jobs_ != 0) {
    (void)std::fprintf(stderr, "vfiod: DmaSpace destroyed with %zu map jobs running\n",
                       running_jobs_);
  }
  running_jobs_ = 0;
  if (auto done = UnmapAll(); !done) {
    (void)std::fprintf(stderr, "vfiod: DMA teardown: %s\n", done.error().message().c_str());
  }
}

Result<ContiguityScan> DmaSpace::Scan(const Backing& backing, uint64_t vaddr, uint64_t size) const {
  if (backing.mmio()) {
    // Device memory has no struct pages: nothing to learn from kpageflags. A
    // BAR is physically contiguous and size-aligned, which BarCongruence uses.
    ContiguityScan scan;
    scan.addr = vaddr;
    scan.len = size;
    scan.report.state = PhysState::kUnknown;
    scan.report.pages = size / kPage4K;
    scan.report.note = "device MMIO: not scanned; a BAR is physically contiguous";
    return scan;
  }
  uint64_t folio_size = KnownFolioSize(backing);
  if (folio_size != 0 && (!IsAligned(vaddr, folio_size) || !IsAligned(size, folio_size))) {
    folio_size = 0;  // part of a huge page: let the scan read the layout
  }
  return ScanContiguity(*reader_, vaddr, size, folio_size);
}

Result<std::unique_ptr<MapJob>> DmaSpace::BeginMap(MapRequest request) {
  constexpr const char* kOp = "map DMA";
  if (!request.backing) {
    return Fail(EINVAL, kOp, "no backing");
  }
  const Backing& backing = *request.backing;
  const uint64_t granule = allocator_.granule();
  if (request.offset > backing.size()) {
    return Fail(EINVAL, kOp, "offset past the end of the backing");
  }
  const uint64_t size = request.size != 0 ? request.size : backing.size() - request.offset;
  if (size == 0 || size > backing.size() - request.offset) {
    return Fail(EINVAL, kOp, "range is empty or past the end of the backing");
  }
  if (!IsAligned(request.offset, granule) || !IsAligned(size, granule)) {
    return Fail(EINVAL, kOp, "offset and size must be multiples of " + std::to_string(granule));
  }
  if (!request.prot.read && !request.prot.write) {
    return Fail(EINVAL, kOp, "neither read nor write access requested");
  }
  if (!backing.mmio()) {
    VFIOD_TRY(CheckMemlockHeadroom(size));
  }
  const uint64_t vaddr = backing.vaddr() + request.offset;
  ContiguityScan scan = VFIOD_TRY(Scan(backing, vaddr, size));
  Congruence congruence;
  if (backing.mmio()) {
    congruence.modulus =
        LargestPageAtMost(allocator_.page_sizes(), std::min(backing.alignment(), size));
    congruence.residue = vaddr & (congruence.modulus - 1);
  } else {
    congruence = ChooseCongruence(scan, allocator_.page_sizes());
  }
  const uint64_t iova = VFIOD_TRY(allocator_.Allocate({.size = size,
                                                       .max_iova = request.max_iova,
                                                       .fixed_iova = request.fixed_iova,
                                                       .congruence_modulus = congruence.modulus,
                                                       .congruence_residue = congruence.residue}));
  const Segment segment{
      .vaddr = vaddr, .iova = iova, .size = size, .prot = request.prot, .folios = scan.folios};
  auto ops = PlanMaps(std::span(&segment, 1), {.chunk_bytes = config_.chunk_bytes,
                                               .dma_avail = EntriesLeft(),
                                               .reserve_entries = config_.reserve_entries});
  if (!ops) {
    (void)allocator_.Free(iova, size);  // just allocated: cannot fail
    return std::unexpected(ops.error());
  }
  MappingReport report{.id = next_id_++,
                       .iova = iova,
                       .size = size,
                       .vaddr = vaddr,
                       .backing = backing.kind(),
                       .pinned = !backing.mmio(),
                       .chunks = ops->size(),
                       .map_ioctls = 0,
                       .congruence = congruence,
                       .contiguity = std::move(scan.report)};
  entries_reserved_ += ops->size();
  ++running_jobs_;
  return std::unique_ptr<MapJob>(
      new MapJob(*this, std::move(request), std::move(report), std::move(*ops)));
}

Result<MappingReport> DmaSpace::Map(MapRequest request) {
  std::unique_ptr<MapJob> job = VFIOD_TRY(BeginMap(std::move(request)));
  while (!VFIOD_TRY(job->Step())) {
  }
  return job->report();
}

std::optional<uint32_t> DmaSpace::EntriesLeft() const {
  if (!entry_limit_) {
    return std::nullopt;
  }
  const uint64_t used = shadow_.size() + entries_reserved_;
  return used >= *entry_limit_ ? 0 : static_cast<uint32_t>(*entry_limit_ - used);
}

std::vector<Mapping> DmaSpace::ShadowEntries() const {
  std::vector<Mapping> out;
  out.reserve(shadow_.size());
  for (const auto& [iova, entry] : shadow_) {
    out.push_back({iova, entry.size});
  }
  return out;
}

std::vector<Mapping> DmaSpace::EntriesOf(uint64_t owner) const {
  std::vector<Mapping> out;
  for (const auto& [iova, entry] : shadow_) {
    if (entry.owner == owner) {
      out.push_back({iova, entry.size});
    }
  }
  return out;
}

std::vector<MappingReport> DmaSpace::Mappings() const {
  std::vector<MappingReport> out;
  out.reserve(records_.size());
  for (const auto& [id, record] : records_) {
    out.push_back(record.report);
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.iova < b.iova; });
  return out;
}

Result<MappingReport> DmaSpace::Find(uint64_t id) const {
  auto it = records_.find(id);
  if (it == records_.end()) {
    return Fail(ENOENT, "find mapping", "no mapping with id " + std::to_string(id));
  }
  return it->second.report;
}

void DmaSpace::DropShadowRange(uint64_t iova, uint64_t size) {
  auto it = shadow_.lower_bound(iova);
  while (it != shadow_.end() && it->first - iova < size) {
    it = shadow_.erase(it);
  }
}

Result<void> DmaSpace::ExecuteUnmap(const UnmapOp& op, UnmapReport& report) {
  auto bytes = op.all ? container_->UnmapAll() : container_->Unmap(op.iova, op.size);
  ++report.ioctls;
  if (!bytes) {
    return std::unexpected(bytes.error());
  }
  report.bytes += *bytes;
  // The call succeeded, so the kernel holds nothing in the range any more,
  // whatever the count says: the shadow follows the kernel.
  if (op.all) {
    shadow_.clear();
  } else {
    DropShadowRange(op.iova, op.size);
  }
  if (*bytes != op.expected_bytes) {
    return Fail(EIO, op.all ? "VFIO_IOMMU_UNMAP_DMA(ALL)" : "VFIO_IOMMU_UNMAP_DMA",
                "the kernel unmapped " + std::to_string(*bytes) + " bytes at iova " + Hex(op.iova) +
                    ", the shadow map held " + std::to_string(op.expected_bytes));
  }
  return Ok();
}

Result<UnmapReport> DmaSpace::UnmapEntries(const std::vector<Mapping>& entries, bool teardown) {
  const std::vector<Mapping> live = ShadowEntries();
  const bool everything = teardown && entries.size() == live.size();
  const std::vector<UnmapOp> ops =
      VFIOD_TRY(PlanUnmaps(entries, live, everything && container_->features().unmap_all));
  UnmapReport report;
  std::optional<Error> mismatch;
  for (const UnmapOp& op : ops) {
    auto done = ExecuteUnmap(op, report);
    if (!done && done.error().code != EIO) {
      return std::unexpected(done.error());
    }
    if (!done && !mismatch) {
      mismatch = done.error();
    }
  }
  if (mismatch) {
    return std::unexpected(*mismatch);
  }
  return report;
}

Result<UnmapReport> DmaSpace::Unmap(uint64_t id) {
  auto it = records_.find(id);
  if (it == records_.end()) {
    return Fail(ENOENT, "unmap DMA", "no mapping with id " + std::to_string(id));
  }
  auto unmapped = UnmapEntries(EntriesOf(id));
  if (!EntriesOf(id).empty()) {
    return unmapped;  // an ioctl failed: the mapping stays, as the kernel holds it
  }
  const MappingReport& report = it->second.report;
  auto freed = allocator_.Free(report.iova, report.size);
  records_.erase(it);  // releases this mapping's share of the backing
  if (!freed) {
    return std::unexpected(freed.error());
  }
  return unmapped;
}

Result<UnmapReport> DmaSpace::UnmapAll() {
  if (running_jobs_ != 0) {
    return Fail(EBUSY, "unmap all DMA", std::to_string(running_jobs_) + " map jobs still running");
  }
  auto unmapped = UnmapEntries(ShadowEntries(), /*teardown=*/true);
  std::set<uint64_t> still_mapped;
  for (const auto& [iova, entry] : shadow_) {
    still_mapped.insert(entry.owner);
  }
  for (auto it = records_.begin(); it != records_.end();) {
    if (still_mapped.contains(it->first)) {
      ++it;
      continue;
    }
    (void)allocator_.Free(it->second.report.iova, it->second.report.size);  // exact allocation
    it = records_.erase(it);
  }
  return unmapped;
}

}  // namespace vfiod::dma
