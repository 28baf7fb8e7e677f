// Client-side load for benchmarks: round-trip latencies, request rates with
// many connections, and map/unmap timings through vfiod, measured request to
// reply with the client library. Used by `vfioctl bench` and by the programs
// in bench/ (which compile this file themselves). No CLI code here.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "client/vfiod_client.h"
#include "proto/result.h"

namespace vfiod::vfioctl {

/// Wall time, in seconds, of each of `count` calls of `method` (no params)
/// made back to back on one new connection to `socket`. Errors: the connect
/// errno; EIO when a call fails (detail: the daemon's error).
[[nodiscard]] Result<std::vector<double>> CallLatencies(const std::string& socket,
                                                        const std::string& method, int count);

/// Round trip of one `ping` on `client`, in seconds (the idle round trip a
/// request-to-reply call cannot go under). EIO when the call fails.
[[nodiscard]] Result<double> TimePing(client::Client& client);

/// What MeasureRate saw.
struct Rate {
  int clients = 0;
  uint64_t requests = 0;  ///< calls that succeeded
  uint64_t errors = 0;    ///< calls that failed (they end that client's run)
  double seconds = 0;     ///< from the first call to the last reply
  [[nodiscard]] double per_second() const {
    return seconds > 0 ? static_cast<double>(requests) / seconds : 0;
  }
};

/// `clients` threads, each on its own connection, call `method` back to back
/// for `seconds`. Connections are made before the clock starts.
/// Errors: EINVAL clients < 1; the connect errno of any client.
[[nodiscard]] Result<Rate> MeasureRate(const std::string& socket, const std::string& method,
                                       int clients, double seconds);

/// Map/unmap timings of one memory through vfiod.
struct MapTimings {
  std::vector<double> map_s;    ///< dma.map_fd, request to reply
  std::vector<double> unmap_s;  ///< dma.free, request to reply
  uint64_t ioctls = 0;          ///< MAP_DMA calls vfiod reported for the last map
  uint64_t chunks = 0;          ///< entries the last mapping used
  uint64_t iova = 0;            ///< where vfiod placed the last mapping
};

/// `loops` times: dma.map_fd of [0, size) of `fd` (a memfd or hugetlbfs
/// file, sealable) into `container`, then dma.free of it. Every map passes
/// the fd again, so the daemon adopts it (checks, seal, its own view) each time.
/// Errors: EIO with the daemon's error as detail.
[[nodiscard]] Result<MapTimings> TimeMapFd(client::Client& client, uint64_t container, int fd,
                                           uint64_t size, int loops);

/// dma.register of [0, size) of `fd`: the daemon adopts the file once and
/// returns the region id that later maps name instead of an fd.
/// Errors: EIO with the daemon's error as detail.
[[nodiscard]] Result<uint64_t> RegisterRegion(client::Client& client, int fd, uint64_t size);

/// dma.unregister of `region`. Errors: EIO with the daemon's error as detail.
[[nodiscard]] Result<void> UnregisterRegion(client::Client& client, uint64_t region);

/// `loops` times: dma.map_fd of [0, size) of registered `region` into
/// `container`, then dma.free of it. Nothing is passed or adopted per map.
/// Errors: EIO with the daemon's error as detail.
[[nodiscard]] Result<MapTimings> TimeMapRegion(client::Client& client, uint64_t container,
                                               uint64_t region, uint64_t size, int loops);

/// A memfd of `size` bytes, populated: `page` 0 for shmem (advised
/// MADV_NOHUGEPAGE, or MADV_HUGEPAGE when `thp`), 2 MiB or 1 GiB for hugetlb.
/// The memfd is mapped at *view (size bytes, owned by the caller: munmap).
/// Errors: errno of memfd_create/ftruncate/mmap/madvise.
[[nodiscard]] Result<UniqueFd> MakeMemfd(uint64_t size, uint64_t page, bool thp, void** view);

}  // namespace vfiod::vfioctl
