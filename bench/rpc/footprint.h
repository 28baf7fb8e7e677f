// The daemon's memory per mapping: RSS idle, then with many 4 KiB mappings.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

#include "common/daemon_process.h"

namespace vfiod::bench {

/// Registers one populated shmem memfd of `mappings` x 4 KiB (dma.register)
/// and maps every 4 KiB slice of it as its own mapping (dma.map_fd {region},
/// batches of 32) on one connection, reading /proc/<pid>/status before and
/// after; then closes the connection (which frees them) and reads it again.
/// Bytes per mapping = RssAnon growth / mappings made.
[[nodiscard]] nlohmann::json MeasureFootprint(const DaemonProcess& daemon, uint64_t mappings);

}  // namespace vfiod::bench
