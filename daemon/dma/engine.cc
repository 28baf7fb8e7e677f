// DmaSpace: creation, starting map jobs, the mapping records and unmaps (engine.h);
// request checks and IOVA placement are in engine_place.cc.
#include "dma/engine.h"

#include <algorithm>
#include <cstdio>
#include <set>
#include <span>
#include <string>

#include "proto/hex.h"

namespace vfiod::dma {
namespace {

constexpr const char* kMapOp = "map DMA";

// How little a folio source knows: the sum of several ranges reports the
// least certain of its parts' sources.
int Uncertainty(const std::string& folio_source) {
  if (folio_source == "assumed") {
    return 3;
  }
  if (folio_source == "smaps") {
    return 2;
  }
  return folio_source == "backing" ? 1 : 0;
}

// Sums the reports of several ranges into one.
void Accumulate(ContiguityReport& total, const ContiguityReport& part) {
  if (Uncertainty(part.folio_source) > Uncertainty(total.folio_source)) {
    total.folio_source = part.folio_source;
  }
  if (part.state == PhysState::kUnknown) {
    total.state = PhysState::kUnknown;
  }
  total.pages += part.pages;
  total.pages_not_present += part.pages_not_present;
  total.run_count += part.run_count;
  for (size_t k = 0; k < total.run_histogram.size(); ++k) {
    total.run_histogram[k] += part.run_histogram[k];
  }
  total.folios_4k += part.folios_4k;
  total.folios_2m += part.folios_2m;
  total.folios_1g += part.folios_1g;
  total.folios_other += part.folios_other;
  if (total.note.empty()) {
    total.note = part.note;
  }
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

Result<HugeShare> DmaSpace::HugeShareOf(uint64_t id) {
  const Record* found = Lookup(id);
  if (found == nullptr) {
    return Fail(ENOENT, "mapping huge share", "no mapping with id " + std::to_string(id));
  }
  const Backing& backing = *found->backing;
  if (backing.mmio()) {
    return Fail(EINVAL, "mapping huge share", "device MMIO has no folios");
  }
  HugeShare share{.source = "pagemap"};
  for (const PlacedPiece& piece : PlacedOf(*found)) {
    const uint64_t va = backing.vaddr() + piece.offset;
    share.bytes += piece.size;
    ContiguityScan scan = VFIOD_TRY(Scan(backing, va, piece.size));
    if (scan.report.state == PhysState::kUnknown && KnownFolioSize(backing, va, piece.size) == 0) {
      // PFNs hidden and the page size not known: ask smaps.
      std::string smaps = VFIOD_TRY(reader_->ReadSmaps());
      std::optional<uint64_t> huge = VFIOD_TRY(HugeBytesFromSmaps(smaps, va, piece.size));
      if (!huge) {
        return Fail(ENOTSUP, "mapping huge share",
                    "physical addresses are hidden (no CAP_SYS_ADMIN) and the mapping is a "
                    "slice of vfiod's view, which smaps cannot count");
      }
      share.huge_bytes += *huge;
      share.source = "smaps";
      continue;
    }
    for (const Folio& folio : scan.folios) {
      if (folio.size >= kPage2M) {
        const uint64_t from = std::max(folio.vaddr, va);
        const uint64_t to = std::min(folio.vaddr + folio.size, va + piece.size);
        share.huge_bytes += to > from ? to - from : 0;
      }
    }
  }
  return share;
}

uint64_t DmaSpace::KnownFolioSize(const Backing& backing, uint64_t vaddr, uint64_t size) {
  const FolioGeometry geometry = GeometryOf(backing);
  const uint64_t folio_size = geometry.exact ? geometry.folio_size : 0;
  if (folio_size != 0 && (!IsAligned(vaddr, folio_size) || !IsAligned(size, folio_size))) {
    return 0;  // part of a huge page: let the scan read the layout
  }
  return folio_size;
}

Result<ContiguityScan> DmaSpace::Scan(const Backing& backing, uint64_t vaddr, uint64_t size) const {
  if (backing.mmio()) {
    // Device memory has no struct pages: nothing to learn from kpageflags. A
    // BAR is physically contiguous and size-aligned, which Place uses.
    ContiguityScan scan;
    scan.addr = vaddr;
    scan.len = size;
    scan.report.state = PhysState::kUnknown;
    scan.report.pages = size / kPage4K;
    scan.report.note = "device MMIO: not scanned; a BAR is physically contiguous";
    scan.report.folio_source = "backing";
    return scan;
  }
  return ScanContiguity(*reader_, vaddr, size, KnownFolioSize(backing, vaddr, size));
}

Result<std::unique_ptr<MapJob>> DmaSpace::BeginMap(MapRequest request) {
  Pieces pieces = VFIOD_TRY(CheckRequest(request));
  if (!request.prot.read && !request.prot.write) {
    return Fail(EINVAL, kMapOp, "neither read nor write access requested");
  }
  const Backing& backing = *request.backing;
  if (!backing.mmio()) {
    VFIOD_TRY(CheckMemlockHeadroom(pieces.total));
  }
  const FolioGeometry geometry = GeometryOf(backing);
  std::vector<ContiguityScan> scans;  // only when the geometry says nothing
  if (!backing.mmio() && geometry.folio_size == 0) {
    for (const PlacedPiece& piece : pieces.list) {
      scans.push_back(VFIOD_TRY(Scan(backing, backing.vaddr() + piece.offset, piece.size)));
    }
  }
  const uint64_t vaddr = backing.vaddr() + pieces.list.front().offset;
  const Congruence congruence = VFIOD_TRY(Place(backing, geometry, vaddr, pieces.list.front().size,
                                                scans.empty() ? nullptr : &scans.front()));
  VFIOD_TRY(AllocateIovas(pieces, request, congruence));
  std::vector<MapRange> segments;
  segments.reserve(pieces.list.size());
  for (size_t i = 0; i < pieces.list.size(); ++i) {
    const PlacedPiece& piece = pieces.list[i];
    segments.push_back({.vaddr = backing.vaddr() + piece.offset,
                        .iova = piece.iova,
                        .size = piece.size,
                        .prot = request.prot,
                        .folios = scans.empty() ? std::span<const Folio>() : scans[i].folios,
                        .cut_align = geometry.folio_size});
  }
  auto ops = PlanMaps(segments, {.chunk_bytes = config_.chunk_bytes,
                                 .dma_avail = EntriesLeft(),
                                 .reserve_entries = config_.reserve_entries});
  if (!ops) {
    (void)FreeIovas(pieces.list, !pieces.fixed, pieces.total);  // just allocated
    return std::unexpected(ops.error());
  }
  MappingReport report{.id = ReserveSlot(),
                       .iova = pieces.list.front().iova,
                       .size = pieces.total,
                       .vaddr = vaddr,
                       .backing = backing.kind(),
                       .pinned = !backing.mmio(),
                       .chunks = ops->size(),
                       .map_ioctls = 0,
                       .congruence = congruence,
                       .segments = {}};
  if (pieces.list.size() > 1) {
    report.segments = std::move(pieces.list);
  }
  entries_reserved_ += ops->size();
  ++running_jobs_;
  return std::unique_ptr<MapJob>(
      new MapJob(*this, std::move(request), std::move(report), !pieces.fixed, std::move(*ops)));
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

std::vector<Entry> DmaSpace::ShadowEntries() const {
  std::vector<Entry> out;
  out.reserve(shadow_.size());
  for (const ShadowEntry& entry : shadow_.All()) {
    out.push_back({entry.iova, entry.size});
  }
  return out;
}

std::vector<Entry> DmaSpace::EntriesIn(uint64_t first, uint64_t last, uint64_t owner) const {
  std::vector<Entry> out;
  for (const ShadowEntry& entry : shadow_.In(first, last, SlotNumberOf(owner))) {
    out.push_back({entry.iova, entry.size});
  }
  return out;
}

std::vector<PlacedPiece> DmaSpace::PlacedOf(const Record& record) {
  if (record.segments) {
    return *record.segments;
  }
  return {{.offset = record.offset, .iova = record.iova, .size = record.size}};
}

std::vector<Entry> DmaSpace::EntriesOf(uint64_t owner, const Record& record) const {
  uint64_t first = record.iova;
  uint64_t last = record.iova + (record.size - 1);
  if (record.segments && !record.one_range) {
    first = UINT64_MAX;
    last = 0;
    for (const PlacedPiece& piece : *record.segments) {
      first = std::min(first, piece.iova);
      last = std::max(last, piece.iova + (piece.size - 1));
    }
  }
  return EntriesIn(first, last, owner);
}

MappingReport DmaSpace::ReportOf(uint64_t id, const Record& record) const {
  MappingReport report{
      .id = id,
      .iova = record.iova,
      .size = record.size,
      .vaddr = record.backing->vaddr() + record.offset,
      .backing = record.backing->kind(),
      .pinned = !record.backing->mmio(),
      .chunks = record.chunks,
      .map_ioctls = record.chunks,
      .congruence = {uint64_t{1} << record.congruence_shift, record.congruence_residue},
      .segments = {}};
  if (record.segments) {
    report.segments = *record.segments;
  }
  return report;
}

const DmaSpace::Record* DmaSpace::Lookup(uint64_t id) const {
  const uint64_t number = SlotNumberOf(id);
  if (number == 0 || number > slots_.size()) {
    return nullptr;
  }
  const Record& record = slots_[number - 1];
  return record.backing && record.generation == id >> 32 ? &record : nullptr;
}

uint64_t DmaSpace::ReserveSlot() {
  if (free_slots_.empty()) {
    slots_.emplace_back();
    return IdOf(slots_.back(), slots_.size() - 1);
  }
  const uint32_t index = free_slots_.back();
  free_slots_.pop_back();
  return IdOf(slots_[index], index);
}

void DmaSpace::ReleaseSlot(uint64_t id) {
  Record& record = SlotOf(id);
  if (record.backing) {  // a committed record (a reserved one was never counted)
    --live_mappings_;
    live_bytes_ -= record.size;
  }
  const uint32_t generation = record.generation + 1;
  record = Record{};
  record.generation = generation == 0 ? 1 : generation;
  free_slots_.push_back(SlotNumberOf(id) - 1);
}

std::vector<MappingReport> DmaSpace::Mappings() const {
  std::vector<MappingReport> out;
  for (size_t index = 0; index < slots_.size(); ++index) {
    if (slots_[index].backing) {
      out.push_back(ReportOf(IdOf(slots_[index], index), slots_[index]));
    }
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.iova < b.iova; });
  return out;
}

Result<MappingReport> DmaSpace::Find(uint64_t id) const {
  const Record* record = Lookup(id);
  if (record == nullptr) {
    return Fail(ENOENT, "find mapping", "no mapping with id " + std::to_string(id));
  }
  return ReportOf(id, *record);
}

Result<ContiguityReport> DmaSpace::Contiguity(uint64_t id) {
  const Record* found = Lookup(id);
  if (found == nullptr) {
    return Fail(ENOENT, "mapping contiguity", "no mapping with id " + std::to_string(id));
  }
  const Record& record = *found;
  ContiguityReport total;
  for (const PlacedPiece& piece : PlacedOf(record)) {
    ContiguityScan scan =
        VFIOD_TRY(Scan(*record.backing, record.backing->vaddr() + piece.offset, piece.size));
    Accumulate(total, scan.report);
  }
  return total;
}

Result<void> DmaSpace::ExecuteUnmap(const UnmapArgs& op, UnmapReport& report) {
  auto bytes = op.all ? container_->UnmapAll() : container_->Unmap(op.iova, op.size);
  ++report.ioctls;
  if (!bytes) {
    return std::unexpected(bytes.error());
  }
  report.bytes += *bytes;
  // The call succeeded, so the kernel holds nothing in the range any more,
  // whatever the count says: the shadow follows the kernel.
  if (op.all) {
    report.entries += shadow_.size();
    shadow_.Clear();
  } else {
    report.entries += shadow_.EraseRange(op.iova, op.size);
  }
  if (*bytes != op.expected_bytes) {
    return Fail(EIO, op.all ? "VFIO_IOMMU_UNMAP_DMA(ALL)" : "VFIO_IOMMU_UNMAP_DMA",
                "the kernel unmapped " + std::to_string(*bytes) + " bytes at iova " + Hex(op.iova) +
                    ", the shadow map held " + std::to_string(op.expected_bytes));
  }
  return Ok();
}

Result<UnmapReport> DmaSpace::UnmapEntries(const std::vector<Entry>& entries, bool teardown) {
  if (entries.empty()) {
    return UnmapReport{};
  }
  // Only the entries between the first and the last matter to the plan: a
  // kept one among them splits the unmap; nothing outside is touched.
  const std::vector<Entry> live =
      teardown ? ShadowEntries()
               : EntriesIn(entries.front().iova, entries.back().iova + (entries.back().size - 1));
  const bool everything = teardown && entries.size() == live.size();
  const std::vector<UnmapArgs> ops =
      VFIOD_TRY(PlanUnmaps(entries, live, everything && container_->features().unmap_all));
  UnmapReport report;
  std::optional<Error> mismatch;
  for (const UnmapArgs& op : ops) {
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
  const Record* found = Lookup(id);
  if (found == nullptr) {
    return Fail(ENOENT, "unmap DMA", "no mapping with id " + std::to_string(id));
  }
  const Record& record = *found;
  auto unmapped = UnmapEntries(EntriesOf(id, record));
  if (!EntriesOf(id, record).empty()) {
    return unmapped;  // an ioctl failed: the mapping stays, as the kernel holds it
  }
  auto freed = FreeIovas(PlacedOf(record), record.one_range, record.size);
  ReleaseSlot(id);  // releases this mapping's share of the backing
  if (!freed) {
    return std::unexpected(freed.error());
  }
  if (unmapped) {
    unmapped->mappings = 1;
  }
  return unmapped;
}

Result<UnmapReport> DmaSpace::UnmapAll() {
  if (running_jobs_ != 0) {
    return Fail(EBUSY, "unmap all DMA", std::to_string(running_jobs_) + " map jobs still running");
  }
  auto unmapped = UnmapEntries(ShadowEntries(), /*teardown=*/true);
  std::set<uint32_t> still_mapped;  // slot numbers
  for (const ShadowEntry& entry : shadow_.All()) {
    still_mapped.insert(entry.owner);
  }
  uint64_t released = 0;
  for (size_t index = 0; index < slots_.size(); ++index) {
    const Record& record = slots_[index];
    const uint64_t id = IdOf(record, index);
    if (!record.backing || still_mapped.contains(SlotNumberOf(id))) {
      continue;
    }
    (void)FreeIovas(PlacedOf(record), record.one_range, record.size);  // exact allocations
    ReleaseSlot(id);
    ++released;
  }
  if (unmapped) {
    unmapped->mappings = released;
  }
  return unmapped;
}

}  // namespace vfiod::dma
