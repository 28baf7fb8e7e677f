// The map table's measurement loop (item 1). The columns of one row (raw
// ioctls on anonymous memory, raw ioctls on the memfd, vfiod with a
// registered region, vfiod one-shot) are measured in interleaved rounds, one
// map + unmap pair of each column per round, so that whatever else the
// machine does at a given moment falls on every column alike. Each vfiod
// call is recorded with the daemon's own time for that very call, and each
// round ends with idle pings: the round trip a request-to-reply path cannot
// go under, measured at the same moments as the maps.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "client/vfiod_client.h"
#include "guest/rig.h"
#include "proto/result.h"
#include "vfioctl/bench_load.h"

namespace vfiod::bench {

/// The samples of one column, one entry per pair.
struct ColumnSamples {
  std::vector<double> map_s;           ///< ioctl to return, or request to reply
  std::vector<double> unmap_s;         ///< likewise for the unmap (dma.free)
  std::vector<double> server_map_s;    ///< vfiod columns: the daemon's own time of that map
  std::vector<double> server_unmap_s;  ///< vfiod columns: the daemon's own time of that free
  /// vfiod columns: the same calls' stages (`stats`' stages_us), by stage
  /// name, one sample per pair.
  std::map<std::string, std::vector<double>> server_map_stages_s;
  std::map<std::string, std::vector<double>> server_unmap_stages_s;
  uint64_t ioctls = 0;  ///< vfiod columns: MAP_DMA calls of the last map
  uint64_t chunks = 0;  ///< vfiod columns: entries of the last mapping
  uint64_t iova = 0;    ///< vfiod columns: where the last mapping was placed
};

/// One timed map + unmap pair of a column; appends its figures to `out`.
using PairFn = std::function<Result<void>(ColumnSamples& out)>;

/// A column of a row: its JSON key (raw, raw_memfd, vfiod, vfiod_oneshot),
/// how to run one pair, and what the pairs measured.
struct Column {
  std::string name;
  PairFn pair;
  ColumnSamples warmup;   ///< the untimed-for-the-mean first pair
  ColumnSamples samples;  ///< one pair per round
};

/// One raw pair: VFIO_IOMMU_MAP_DMA then UNMAP_DMA of [vaddr, vaddr + size)
/// at `iova` through the rig's container, each timed. Errors: the rig's.
[[nodiscard]] PairFn RawPair(const GuestRig& rig, uint64_t vaddr, uint64_t iova, uint64_t size);

/// One vfiod pair: `pair` runs one dma.map_fd + dma.free (timed request to
/// reply, vfioctl::TimeMapRegion or TimeMapFd with one loop); the daemon's
/// `stats` are read on `client` before and after it, untimed, and the growth
/// of dma.map_fd's and dma.free's total time is that pair's server time.
/// Errors: those of `pair`; EIO when `stats` fails or does not count the calls.
[[nodiscard]] PairFn VfiodPair(client::Client& client,
                               std::function<Result<vfioctl::MapTimings>()> pair);

/// Runs one warm-up pair of every column (under TCG the first run of a kernel
/// path pays for translating it), then `rounds` rounds. Round r runs one pair
/// of each column, starting at column r % n, so that no column is always
/// first or always after the same other one; then `pings` calls of `ping`.
/// Returns the ping round trips. Errors: the first failing pair's or ping's.
[[nodiscard]] Result<std::vector<double>> RunRounds(std::vector<Column>& columns, int rounds,
                                                    const std::function<Result<double>()>& ping,
                                                    int pings);

/// A column's figures: map and unmap (OpJson, sections.h), and for vfiod columns the
/// daemon's own time ("server"), its stages ("server_stages": per stage,
/// mean and median seconds), the client-minus-server gap per call (Summary:
/// mean, p50, p90, ...), ioctls, chunks, iova and the warm-up pair.
[[nodiscard]] nlohmann::json ColumnJson(const Column& column, uint64_t bytes);

}  // namespace vfiod::bench
