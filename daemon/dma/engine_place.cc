// DmaSpace: request checks and IOVA placement of a map (engine.h).
#include <algorithm>
#include <string>

#include "dma/engine.h"
#include "proto/hex.h"

namespace vfiod::dma {
namespace {

constexpr const char* kMapOp = "map DMA";

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

std::unexpected<Error> SegmentError(size_t index, const std::string& why) {
  return Fail(EINVAL, kMapOp, "segment " + std::to_string(index) + ": " + why);
}

// Adds "segment i" to an error about one segment's IOVA.
std::unexpected<Error> InSegment(Error error, size_t index) {
  error.detail =
      "segment " + std::to_string(index) + (error.detail.empty() ? "" : ": " + error.detail);
  return std::unexpected(std::move(error));
}

// EINVAL naming the first segment whose named IOVA range meets another's.
Result<void> CheckDisjointIovas(const std::vector<PlacedPiece>& list) {
  std::vector<size_t> order(list.size());
  for (size_t i = 0; i < order.size(); ++i) {
    order[i] = i;
  }
  std::ranges::sort(order, {}, [&](size_t i) { return list[i].iova; });
  for (size_t k = 1; k < order.size(); ++k) {
    const PlacedPiece& prev = list[order[k - 1]];
    if (prev.iova + (prev.size - 1) >= list[order[k]].iova) {
      return SegmentError(order[k], "IOVA range overlaps segment " + std::to_string(order[k - 1]));
    }
  }
  return Ok();
}

}  // namespace

Result<DmaSpace::Pieces> DmaSpace::CheckRequest(const MapRequest& request) const {
  if (!request.backing) {
    return Fail(EINVAL, kMapOp, "no backing");
  }
  const uint64_t limit = request.backing->size();
  const uint64_t granule = allocator_.granule();
  Pieces pieces;
  if (request.segments.empty()) {
    if (request.offset > limit) {
      return Fail(EINVAL, kMapOp, "offset past the end of the backing");
    }
    const uint64_t size = request.size != 0 ? request.size : limit - request.offset;
    if (size == 0 || size > limit - request.offset) {
      return Fail(EINVAL, kMapOp, "range is empty or past the end of the backing");
    }
    if (!IsAligned(request.offset, granule) || !IsAligned(size, granule)) {
      return Fail(EINVAL, kMapOp,
                  "offset and size must be multiples of " + std::to_string(granule));
    }
    pieces.list.push_back({.offset = request.offset, .iova = 0, .size = size});
    pieces.total = size;
    return pieces;
  }
  pieces.fixed = request.segments.front().iova.has_value();
  for (size_t i = 0; i < request.segments.size(); ++i) {
    const ScatterPiece& seg = request.segments[i];
    if (seg.size == 0) {
      return SegmentError(i, "size is 0");
    }
    if (!IsAligned(seg.offset | seg.size, granule)) {
      return SegmentError(i, "offset and size must be multiples of " + std::to_string(granule));
    }
    if (seg.offset > limit || seg.size > limit - seg.offset) {
      return SegmentError(i, "outside the backing (" + std::to_string(limit) + " bytes)");
    }
    if (seg.iova.has_value() != pieces.fixed) {
      return SegmentError(i, "either every segment names its IOVA or none does");
    }
    if (pieces.fixed &&
        (!IsAligned(*seg.iova, granule) || *seg.iova > UINT64_MAX - (seg.size - 1))) {
      return SegmentError(i, "IOVA " + Hex(*seg.iova) + " is not a multiple of " +
                                 std::to_string(granule) + " or its range wraps");
    }
    if (pieces.total > UINT64_MAX - seg.size) {
      return SegmentError(i, "the total size overflows");
    }
    pieces.total += seg.size;
    pieces.list.push_back({.offset = seg.offset, .iova = seg.iova.value_or(0), .size = seg.size});
  }
  if (pieces.fixed && request.fixed_iova) {
    return Fail(EINVAL, kMapOp, "fixed_iova given together with segment IOVAs");
  }
  if (pieces.fixed) {
    VFIOD_TRY(CheckDisjointIovas(pieces.list));
  }
  return pieces;
}

Result<Congruence> DmaSpace::Place(const Backing& backing, const FolioGeometry& geometry,
                                   uint64_t vaddr, uint64_t size,
                                   const ContiguityScan* scan) const {
  const uint64_t pgsizes = allocator_.page_sizes();
  if (backing.mmio()) {
    const uint64_t modulus = LargestPageAtMost(pgsizes, std::min(backing.alignment(), size));
    return Congruence{modulus, vaddr & (modulus - 1)};
  }
  if (geometry.folio_size == 0) {
    return ChooseCongruence(*scan, pgsizes);
  }
  // 2 MiB pages may still lie in 1 GiB-contiguous blocks: worth a few reads.
  if (geometry.exact && geometry.folio_size == kPage2M && size >= kPage1G &&
      (pgsizes & kPage1G) != 0 && IsAligned(vaddr, kPage2M)) {
    if (auto giga = VFIOD_TRY(ProbeGigaCongruence(*reader_, vaddr, size))) {
      return *giga;
    }
  }
  return GeometryCongruence(vaddr, size, geometry.folio_size, pgsizes);
}

Result<void> DmaSpace::AllocateIovas(Pieces& pieces, const MapRequest& request,
                                     const Congruence& congruence) {
  if (!pieces.fixed) {
    uint64_t iova = VFIOD_TRY(allocator_.Allocate({.size = pieces.total,
                                                   .max_iova = request.max_iova,
                                                   .fixed_iova = request.fixed_iova,
                                                   .congruence_modulus = congruence.modulus,
                                                   .congruence_residue = congruence.residue}));
    for (PlacedPiece& piece : pieces.list) {
      piece.iova = iova;
      iova += piece.size;
    }
    return Ok();
  }
  for (size_t i = 0; i < pieces.list.size(); ++i) {
    const PlacedPiece& piece = pieces.list[i];
    auto taken = allocator_.Allocate(
        {.size = piece.size, .max_iova = request.max_iova, .fixed_iova = piece.iova});
    if (!taken) {
      (void)FreeIovas(
          std::vector<PlacedPiece>(pieces.list.begin(),
                                   pieces.list.begin() + static_cast<std::ptrdiff_t>(i)),
          false, 0);  // just allocated: cannot fail
      return InSegment(taken.error(), i);
    }
  }
  return Ok();
}

Result<void> DmaSpace::FreeIovas(const std::vector<PlacedPiece>& placed, bool one_range,
                                 uint64_t total) {
  if (one_range) {
    return placed.empty() ? Ok() : allocator_.Free(placed.front().iova, total);
  }
  Result<void> result = Ok();
  for (const PlacedPiece& piece : placed) {
    auto freed = allocator_.Free(piece.iova, piece.size);
    if (!freed && result) {
      result = std::unexpected(freed.error());
    }
  }
  return result;
}
}  // namespace vfiod::dma
