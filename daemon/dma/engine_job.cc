// MapJob: one MAP_DMA chunk per step, undone in full when a chunk fails.
#include <cstdio>

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
  const MapOp& op = ops_[next_];
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
  space_->shadow_.emplace(op.iova, DmaSpace::Entry{.size = op.size, .owner = report_.id});
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

void MapJob::Commit() {
  finished_ = true;
  --space_->running_jobs_;
  space_->records_.emplace(report_.id, DmaSpace::Record{report_, request_.backing});
}

Result<void> MapJob::Rollback() {
  finished_ = true;
  --space_->running_jobs_;
  space_->entries_reserved_ -= ops_.size() - next_;
  auto undone = space_->UnmapEntries(space_->EntriesOf(report_.id));
  if (space_->EntriesOf(report_.id).empty()) {
    auto freed = space_->allocator_.Free(report_.iova, report_.size);
    return undone ? freed : std::unexpected(undone.error());  // e.g. an EIO count mismatch
  }
  // Some chunks could not be unmapped: keep them visible as a mapping of their
  // own (IOVA still allocated, backing still held) so UnmapAll can retry.
  report_.chunks = space_->EntriesOf(report_.id).size();
  space_->records_.emplace(report_.id, DmaSpace::Record{report_, request_.backing});
  return undone ? Fail(EIO, "roll back DMA map", "chunks left mapped")
                : std::unexpected(undone.error());
}

}  // namespace vfiod::dma
