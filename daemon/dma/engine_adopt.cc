// DmaSpace::Adopt and friends: taking over the mappings a previous vfiod left
// in a container (live restart, issue 14), handing them over, abandoning them.
#include <algorithm>
#include <bit>
#include <string>

#include "dma/engine.h"
#include "proto/hex.h"

namespace vfiod::dma {
namespace {

constexpr const char* kAdoptOp = "adopt DMA mapping";

std::string EntryText(const AdoptEntry& e) { return "entry " + Hex(e.iova) + "+" + Hex(e.size); }

}  // namespace

Result<void> DmaSpace::CheckAdopt(const AdoptRequest& request) const {
  if (!request.backing) {
    return Fail(EBADF, kAdoptOp, "its backing fd is missing");
  }
  if (request.entries.empty()) {
    return Fail(EINVAL, kAdoptOp, "its kernel entries are not known");
  }
  const uint64_t granule = allocator_.granule();
  uint64_t next = request.entries.front().iova;
  for (const AdoptEntry& e : request.entries) {
    if (e.size == 0 || ((e.iova | e.size | e.offset) & (granule - 1)) != 0) {
      return Fail(EINVAL, kAdoptOp, EntryText(e) + " is empty or misaligned");
    }
    if (e.iova != next || e.iova + e.size < e.iova) {
      return Fail(EINVAL, kAdoptOp, EntryText(e) + " does not follow the entry before it");
    }
    if (e.offset > request.backing->size() || e.size > request.backing->size() - e.offset) {
      return Fail(EINVAL, kAdoptOp, EntryText(e) + " lies outside its backing");
    }
    next = e.iova + e.size;
  }
  return Ok();
}

// Probes every entry (invalidating it), then gives each its new vaddr. An
// entry the kernel holds exactly invalidates to its size; 0 bytes: absent;
// other counts: cut differently. EINVAL on invalidation: already invalid (a
// graceful predecessor), which the update then confirms, or a split.
Result<void> DmaSpace::MoveEntries(const AdoptRequest& request, uint64_t& moved) {
  for (const AdoptEntry& e : request.entries) {
    auto bytes = container_->InvalidateVaddr(e.iova, e.size);
    if (!bytes && bytes.error().code != EINVAL) {
      return std::unexpected(bytes.error());
    }
    if (bytes && *bytes == 0) {
      return Fail(ENOENT, kAdoptOp, "the kernel holds no " + EntryText(e));
    }
    if (bytes && *bytes != e.size) {
      return Fail(EINVAL, kAdoptOp,
                  "the kernel's entries in " + EntryText(e) + " are cut differently");
    }
  }
  for (const AdoptEntry& e : request.entries) {
    auto updated = container_->UpdateVaddr(request.backing->vaddr() + e.offset, e.iova, e.size);
    if (!updated) {
      Error error = updated.error();
      error.detail = EntryText(e) + ": " + error.detail;
      return std::unexpected(std::move(error));
    }
    ++moved;
  }
  return Ok();
}

void DmaSpace::RecordAdopted(AdoptRequest& request, AdoptOutcome& outcome) {
  const AdoptEntry& first = request.entries.front();
  const AdoptEntry& last = request.entries.back();
  std::vector<PlacedPiece> pieces;
  for (const AdoptEntry& e : request.entries) {
    if (!pieces.empty() && pieces.back().offset + pieces.back().size == e.offset) {
      pieces.back().size += e.size;
    } else {
      pieces.push_back({.offset = e.offset, .iova = e.iova, .size = e.size});
    }
  }
  outcome.id = ReserveSlot();
  Record& record = SlotOf(outcome.id);
  const uint32_t slot = SlotNumberOf(outcome.id);
  for (const AdoptEntry& e : request.entries) {
    shadow_.Insert(e.iova, e.size, slot);
  }
  record.backing = std::move(request.backing);
  if (pieces.size() > 1) {
    record.segments = std::make_unique<const std::vector<PlacedPiece>>(std::move(pieces));
  }
  record.offset = first.offset;
  record.iova = first.iova;
  record.size = last.iova + last.size - first.iova;
  record.chunks = static_cast<uint32_t>(request.entries.size());
  record.congruence_shift = static_cast<uint8_t>(std::countr_zero(allocator_.granule()));
  record.congruence_residue = 0;
  record.one_range = true;
  ++live_mappings_;
  live_bytes_ += record.size;
}

// Unmaps whatever the kernel holds in the IOVA ranges outside the adopted
// mappings: one UNMAP_DMA per gap (an adopted range is exactly its entries,
// so no gap can split one).
void DmaSpace::UnmapStray(AdoptReport& report) {
  std::vector<Entry> taken;
  for (const Record& record : slots_) {
    if (record.backing) {
      taken.push_back({record.iova, record.size});
    }
  }
  std::sort(taken.begin(), taken.end(), [](auto& a, auto& b) { return a.iova < b.iova; });
  auto sweep = [&](uint64_t first, uint64_t last) {  // inclusive
    if (first > last) {
      return;
    }
    auto bytes = container_->Unmap(first, last - first + 1);
    if (bytes) {
      report.stray_bytes += *bytes;
    } else {
      report.unmap_failures.push_back(bytes.error());
    }
  };
  for (const kernel::IovaRange& range : allocator_.ranges()) {
    uint64_t at = range.start;
    bool done = false;
    for (const Entry& m : taken) {
      if (m.iova + m.size - 1 < range.start || m.iova > range.last) {
        continue;
      }
      if (m.iova > at) {
        sweep(at, m.iova - 1);
      }
      if (m.iova + m.size - 1 >= range.last) {
        done = true;
        break;
      }
      at = m.iova + m.size;
    }
    if (!done) {
      sweep(at, range.last);
    }
  }
}

Result<AdoptReport> DmaSpace::Adopt(std::vector<AdoptRequest> requests) {
  if (running_jobs_ != 0 || live_mappings_ != 0 || !shadow_.empty()) {
    return Fail(EBUSY, kAdoptOp, "the DMA space is not new");
  }
  if (!container_->features().update_vaddr) {
    return Fail(ENOTSUP, kAdoptOp, "the kernel lacks VFIO_UPDATE_VADDR");
  }
  AdoptReport report;
  for (AdoptRequest& request : requests) {
    AdoptOutcome& outcome = report.mappings.emplace_back();
    outcome.key = request.key;
    auto checked = CheckAdopt(request);
    if (checked && !request.entries.empty()) {
      const uint64_t first = request.entries.front().iova;
      const AdoptEntry& last = request.entries.back();
      auto taken =
          allocator_.Allocate({.size = last.iova + last.size - first, .fixed_iova = first});
      checked = taken ? Ok() : std::unexpected(taken.error());
    }
    if (checked) {
      checked = MoveEntries(request, report.moved_entries);
      if (checked) {
        RecordAdopted(request, outcome);
        continue;
      }
      const AdoptEntry& last = request.entries.back();
      const uint64_t first = request.entries.front().iova;
      (void)allocator_.Free(first, last.iova + last.size - first);  // just allocated
    }
    outcome.error = checked.error();
    if (checked.error().code == EEXIST || request.entries.empty()) {
      continue;  // another mapping's range, or nothing known to unmap
    }
    // Partly moved or not: the range is unmapped whole (what the IOVA sweep
    // would do anyway), so nothing of it stays pinned for nobody.
    const uint64_t first = request.entries.front().iova;
    const AdoptEntry& last = request.entries.back();
    if (last.iova + last.size > first) {
      auto bytes = container_->Unmap(first, last.iova + last.size - first);
      if (bytes) {
        outcome.released_bytes = *bytes;
      } else {
        report.unmap_failures.push_back(bytes.error());
      }
    }
  }
  UnmapStray(report);
  const kernel::IommuInfo info = VFIOD_TRY(container_->IommuInfo());
  if (info.dma_avail) {  // the budget counts the entries now held as ours
    entry_limit_ = *info.dma_avail + static_cast<uint32_t>(shadow_.size());
  }
  return report;
}

Result<DmaSpace::Keepable> DmaSpace::KeepableOf(uint64_t id) const {
  const Record* record = Lookup(id);
  if (record == nullptr) {
    return Fail(ENOENT, "keep DMA mapping", "no mapping " + std::to_string(id));
  }
  Keepable out;
  out.fd = record->backing->fd();
  const uint64_t base = record->backing->fd_offset();
  std::vector<PlacedPiece> pieces = PlacedOf(*record);
  std::sort(pieces.begin(), pieces.end(), [](auto& a, auto& b) { return a.iova < b.iova; });
  size_t piece = 0;
  for (const ShadowEntry& e :
       shadow_.In(record->iova, record->iova + record->size - 1, SlotNumberOf(id))) {
    while (piece < pieces.size() && e.iova >= pieces[piece].iova + pieces[piece].size) {
      ++piece;
    }
    if (piece == pieces.size() || e.iova < pieces[piece].iova ||
        e.iova + e.size > pieces[piece].iova + pieces[piece].size) {
      return Fail(EINVAL, "keep DMA mapping",
                  EntryText({e.iova, e.size, 0}) + " crosses a segment");
    }
    out.entries.push_back(
        {e.iova, e.size, base + pieces[piece].offset + (e.iova - pieces[piece].iova)});
  }
  return out;
}

Result<uint64_t> DmaSpace::InvalidateAll() {
  if (running_jobs_ != 0) {
    return Fail(EBUSY, "invalidate DMA vaddrs", "map jobs are running");
  }
  uint64_t total = 0;
  for (const ShadowEntry& e : shadow_.All()) {
    total += VFIOD_TRY(container_->InvalidateVaddr(e.iova, e.size));
  }
  return total;
}

Result<void> DmaSpace::Abandon() {
  if (running_jobs_ != 0) {
    return Fail(EBUSY, "abandon DMA space", "map jobs are running");
  }
  shadow_.Clear();
  for (size_t index = 0; index < slots_.size(); ++index) {
    if (slots_[index].backing) {
      ReleaseSlot(IdOf(slots_[index], index));
    }
  }
  return Ok();
}

}  // namespace vfiod::dma
