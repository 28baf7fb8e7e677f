// MapJob: one MAP_DMA chunk per step, undone in full when a chunk fails.
#include <bit>
#include <cstdio>
#include <utility>

#include "dma/engine.h"

namespace vfiod::dma {

MapJob::~MapJob() {
  if (finished_) {
    return;
  }
  if (auto undone = Rollback(); !undone) {
    // A destructor can only report, and only as far as stderr lets it.
    (void)std::fprintf(stderr, "vfiod: abandoned map job %llu: %s\n",
                       static_cast<unsigned long long>(report_.id),
                       undone.error().message().c_str());
  }
}

MapProgress MapJob::progress() const {
  return {.chunks_done = next_,
          .chunks_total = ops_.size(),
          .bytes_done = bytes_done_,
          .bytes_total = report_.size};
}

Result<bool> MapJob::Step() {
  if (finished_) {
    return Fail(EINVAL, "map DMA step", "the job is finished");
  }
  const MapArgs& op = ops_[next_];
  auto mapped = space_->container_->Map({.vaddr = op.vaddr,
                                         .iova = op.iova,
                                         .size = op.size,
                                         .read = op.prot.read,
                                         .write = op.prot.write});
  ++report_.map_ioctls;
  if (!mapped) {
    Error error = mapped.error();
    error.detail += (error.detail.empty() ? "" : "; ") + std::string("chunk ") +
                    std::to_string(next_ + 1) + " of " + std::to_string(ops_.size()) +
                    " failed, the chunks before it were unmapped";
    if (auto undone = Rollback(); !undone) {
      error.detail += "; rollback: " + undone.error().message();
    }
    return std::unexpected(std::move(error));
  }
  space_->shadow_.Insert(op.iova, op.size, DmaSpace::SlotNumberOf(report_.id));
  --space_->entries_reserved_;
  ++next_;
  bytes_done_ += op.size;
  if (request_.on_chunk) {
    request_.on_chunk(progress());
  }
  if (next_ < ops_.size()) {
    return false;
  }
  Commit();
  return true;
}

std::vector<Entry> MapJob::MappedEntries() const {
  if (ops_.empty()) {
    return {};
  }
  // The plan is in IOVA order: its entries lie between the first and the last op.
  const MapArgs& last = ops_.back();
  return space_->EntriesIn(ops_.front().iova, last.iova + (last.size - 1), report_.id);
}

std::vector<PlacedPiece> MapJob::Placed() const {
  if (!report_.segments.empty()) {
    return report_.segments;
  }
  return {{.offset = report_.vaddr - request_.backing->vaddr(),
           .iova = report_.iova,
           .size = report_.size}};
}

void MapJob::Commit() {
  finished_ = true;
  --space_->running_jobs_;
  Store();
}

void MapJob::Store() {
  DmaSpace::Record& record = space_->SlotOf(report_.id);  // reserved by BeginMap
  if (!record.backing) {
    ++space_->live_mappings_;
  } else {
    space_->live_bytes_ -= record.size;  // stored again (a rollback's leftovers)
  }
  space_->live_bytes_ += report_.size;
  record.offset = report_.vaddr - request_.backing->vaddr();
  record.backing = std::move(request_.backing);  // the job is finished: the record holds it now
  record.iova = report_.iova;
  record.size = report_.size;
  record.congruence_residue = static_cast<uint32_t>(report_.congruence.residue);
  record.chunks = static_cast<uint32_t>(report_.chunks);
  record.congruence_shift = static_cast<uint8_t>(std::countr_zero(report_.congruence.modulus));
  record.one_range = one_range_;
  if (!report_.segments.empty()) {
    record.segments = std::make_unique<const std::vector<PlacedPiece>>(report_.segments);
  }
}

Result<void> MapJob::Rollback() {
  finished_ = true;
  --space_->running_jobs_;
  space_->entries_reserved_ -= ops_.size() - next_;
  auto undone = space_->UnmapEntries(MappedEntries());
  const size_t left = MappedEntries().size();
  if (left == 0) {
    auto freed = space_->FreeIovas(Placed(), one_range_, report_.size);
    space_->ReleaseSlot(report_.id);
    return undone ? freed : std::unexpected(undone.error());  // e.g. an EIO count mismatch
  }
  // Some chunks could not be unmapped: keep them visible as a mapping of their
  // own (IOVA still allocated, backing still held) so UnmapAll can retry.
  report_.chunks = left;
  Store();
  return undone ? Fail(EIO, "roll back DMA map", "chunks left mapped")
                : std::unexpected(undone.error());
}

}  // namespace vfiod::dma
