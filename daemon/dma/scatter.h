// A scatter list's pieces: the one type for a piece asked for (by the
// client, through the service, to the engine) and the one for a piece placed
// (what the engine reports and keeps). The planner's MapRange is the level
// below: a piece turned into vfiod's addresses.
#pragma once

#include <cstdint>
#include <optional>

namespace vfiod::dma {

/// One piece of a scatter list as asked for: [offset, offset + size) of the
/// mapping's backing (a client's file or region, or memory vfiod allocated),
/// at `iova` when the client names it.
struct ScatterPiece {
  uint64_t offset = 0;  ///< a multiple of the IOMMU granule
  uint64_t size = 0;    ///< a non-zero multiple of the IOMMU granule
  std::optional<uint64_t> iova;
  bool operator==(const ScatterPiece&) const = default;
};

/// Where one piece of a scatter-list mapping went.
struct PlacedPiece {
  uint64_t offset = 0;  ///< in the backing
  uint64_t iova = 0;
  uint64_t size = 0;
  bool operator==(const PlacedPiece&) const = default;
};

}  // namespace vfiod::dma
