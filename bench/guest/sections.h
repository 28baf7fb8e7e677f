// The guest benchmark's sections (BENCHMARKS.md items 1-5). Each measures,
// prints its table on stderr and returns its figures as JSON; a section that
// cannot run returns {"error": "..."} and the others still run.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "dma/contiguity.h"
#include "guest/rig.h"

namespace vfiod::bench {

/// IOVA where the raw maps go: 4 GiB, above the x86 MSI window and 1 GiB aligned.
inline constexpr uint64_t kRawIova = uint64_t{1} << 32;

struct GuestOptions {
  std::string vfiod;            ///< the vfiod binary (item 1)
  std::string edu_bdf;          ///< vfiod's container device (item 1)
  std::string nvme_bdf;         ///< the raw container's device
  std::string ivshmem_bdf;      ///< the BAR of item 5
  int loops = 5;                ///< map/unmap pairs averaged per figure
  std::vector<uint64_t> sizes;  ///< table sizes for 4K, THP, 2M (1G: 1 GiB only)
};

/// Raw map/unmap timings of one buffer at one IOVA, `loops` times.
struct Loops {
  std::vector<double> map_s;
  std::vector<double> unmap_s;
};
[[nodiscard]] Result<Loops> RawLoops(const GuestRig& rig, uint64_t vaddr, uint64_t iova,
                                     uint64_t size, int loops);

/// vfiod's steps for a dma.map_fd / dma.free, redone in this process with the
/// daemon's own code, each timed: adopt the fd (checks, seal, mmap, populate),
/// contiguity scan and congruence, MAP_DMA at a congruent IOVA, UNMAP_DMA,
/// release of the backing (munmap, close).
struct Breakdown {
  std::vector<double> adopt_s;
  std::vector<double> scan_s;
  std::vector<double> map_s;
  std::vector<double> unmap_s;
  std::vector<double> release_s;
  uint64_t view_offset_2m = 0;  ///< the daemon-side view's vaddr % 2 MiB
  uint64_t pmd_mapped = 0;      ///< ShmemPmdMapped growth when the view was populated
};
[[nodiscard]] Result<Breakdown> BreakDownMapFd(const GuestRig& rig, int fd, uint64_t size,
                                               int loops);

/// The mean of `samples` (0 for none).
[[nodiscard]] double Mean(const std::vector<double>& samples);

/// {"mean_s", "gbps", "samples"} for one operation on `bytes`.
[[nodiscard]] nlohmann::json OpJson(const std::vector<double>& samples, uint64_t bytes);

nlohmann::json RunMapTable(const GuestRig& rig, const GuestOptions& options);
nlohmann::json RunBatching(const GuestRig& rig, const GuestOptions& options);
nlohmann::json RunContiguityCost(const GuestRig& rig, const GuestOptions& options);
nlohmann::json RunPlacement(const GuestRig& rig, const GuestOptions& options);
nlohmann::json RunBar(const GuestRig& rig, const GuestOptions& options);

}  // namespace vfiod::bench
