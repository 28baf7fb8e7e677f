// The guest benchmark's sections (BENCHMARKS.md items 1-5). Each measures,
// prints its table on stderr and returns its figures as JSON; a section that
// cannot run returns {"error": "..."} and the others still run.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "client/vfiod_client.h"
#include "common/daemon_process.h"
#include "dma/contiguity.h"
#include "guest/engine_probe.h"
#include "guest/rig.h"

namespace vfiod::bench {

/// IOVA where the raw maps go: 4 GiB, above the x86 MSI window and 1 GiB aligned.
inline constexpr uint64_t kRawIova = uint64_t{1} << 32;

struct GuestOptions {
  std::string vfiod;            ///< the vfiod binary (item 1)
  std::string edu_bdf;          ///< vfiod's container device (item 1)
  std::string nvme_bdf;         ///< the raw container's device
  std::string ivshmem_bdf;      ///< the BAR of item 5
  int loops = 5;                ///< map/unmap pairs averaged per figure (items 2-5, breakdown)
  int map_loops = 30;           ///< interleaved rounds per row of the map table (item 1)
  std::vector<uint64_t> sizes;  ///< table sizes for 4K, THP, 2M (1G: 1 GiB only)
};

/// Raw map/unmap timings of one buffer at one IOVA, one pair per loop.
struct Loops {
  std::vector<double> map_s;
  std::vector<double> unmap_s;
};

/// Raw map/unmap of `size` bytes at each (vaddr, iova) of `targets`,
/// interleaved: one warm-up pair each, then `loops` rounds of one pair per
/// target in rotating order (map_rounds.h). One Loops per target, in order.
struct RawTarget {
  uint64_t vaddr = 0;
  uint64_t iova = 0;
};
[[nodiscard]] Result<std::vector<Loops>> InterleavedRawLoops(const GuestRig& rig,
                                                             const std::vector<RawTarget>& targets,
                                                             uint64_t size, int loops);

/// vfiod's steps for dma.map_fd / dma.free, redone in this process with the
/// daemon's own code (dma::AdoptClientFd and the engine's DmaSpace on the
/// rig's container), each timed. Region path (dma.register once, then
/// dma.map_fd {region} / dma.free): the adoption once, then per pass the plan
/// (DmaSpace::BeginMap: placement, IOVA, chunks), the MAP_DMA steps and the
/// unmap. One-shot path (dma.map_fd {fd}): adopt, plan, MAP_DMA, unmap and
/// release of the view every time.
struct Breakdown {
  double register_s = 0;        ///< region: AdoptClientFd, once
  std::vector<double> plan_s;   ///< region: BeginMap
  std::vector<double> map_s;    ///< region: MAP_DMA steps
  std::vector<double> unmap_s;  ///< region: DmaSpace::Unmap
  ReadCounts plan_reads;        ///< region: page-info reads of all timed plans together
  std::vector<double> adopt_s;  ///< one-shot: AdoptClientFd
  std::vector<double> oneshot_plan_s;
  std::vector<double> oneshot_map_s;
  std::vector<double> oneshot_unmap_s;
  std::vector<double> release_s;  ///< one-shot: the view's munmap and close
  uint64_t view_offset_2m = 0;    ///< the daemon-side view's vaddr % 2 MiB
  uint64_t pmd_mapped = 0;        ///< ShmemPmdMapped growth from adoption to mapped
  uint64_t congruence = 0;        ///< the modulus the engine placed the IOVA for
};
[[nodiscard]] Result<Breakdown> BreakDownMapFd(const GuestRig& rig, int fd, uint64_t size,
                                               int loops);

/// A vfiod of the benchmark's own (kernel "linux", warnings
/// only, no policy rules, 1 GiB map chunks), a client and a container holding
/// `bdf`'s group (map_table.cc). Errors: the daemon's start, EIO when the
/// container cannot be made.
struct Vfiod {
  DaemonProcess daemon;
  client::Client client;
  uint64_t container = 0;
};
[[nodiscard]] Result<Vfiod> StartVfiod(const GuestOptions& options, const std::string& bdf);

/// The mean of `samples` (0 for none).
[[nodiscard]] double Mean(const std::vector<double>& samples);

/// {"mean_s", "median_s", "min_s", "gbps" (of the mean), "samples"} for one
/// operation on `bytes`.
[[nodiscard]] nlohmann::json OpJson(const std::vector<double>& samples, uint64_t bytes);

nlohmann::json RunMapTable(const GuestRig& rig, const GuestOptions& options);
nlohmann::json RunBatching(const GuestRig& rig, const GuestOptions& options);
nlohmann::json RunContiguityCost(const GuestRig& rig, const GuestOptions& options);
nlohmann::json RunPlacement(const GuestRig& rig, const GuestOptions& options);
nlohmann::json RunBar(const GuestRig& rig, const GuestOptions& options);
/// dma.map_bar through vfiod against raw ioctls on the same BAR (bar_vfiod.cc).
/// Opens the BAR's group itself: the caller's rig must have let it go.
nlohmann::json RunBarVfiod(const GuestOptions& options);

}  // namespace vfiod::bench
