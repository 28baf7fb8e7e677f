// The daemon's memory per mapping: RSS idle, then with many 4 KiB mappings.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

#include "common/daemon_process.h"

namespace vfiod::bench {

/// Makes up to `mappings` dma.alloc 4 KiB mappings (batches of 256) on one
/// connection, reads /proc/<pid>/status before and after, then closes the
/// connection (which frees them) and reads it again. The count is capped below
/// the daemon's RLIMIT_NOFILE and vm.max_map_count (each mapping holds a memfd
/// and a VMA); the JSON says what capped it.
[[nodiscard]] nlohmann::json MeasureFootprint(const DaemonProcess& daemon, uint64_t mappings);

}  // namespace vfiod::bench
