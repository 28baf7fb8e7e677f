// The map table's text output (stderr), from the figures' JSON: what the
// issue's format asks for ("VFIO MAP DMA in X s (Y GB/s)", mean of the
// loops), the median and min beside it, the daemon's own time and the
// client-minus-server gap per call, and the ratios with their bound.
#pragma once

#include <nlohmann/json.hpp>

#include "guest/sections.h"

namespace vfiod::bench {

/// Prints one measured row of the map table (see map_table.cc for its keys).
void PrintRow(const nlohmann::json& row, const Breakdown& parts);

/// Prints the rows' ratios side by side with their bounds, and says which
/// cells miss 0.97 although the round trip alone is within 3% of the map.
void PrintSummary(const nlohmann::json& rows);

}  // namespace vfiod::bench
