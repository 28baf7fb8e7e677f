// The daemon's DMA engine run in the benchmark's own process, on the rig's
// container, with its page-info reads counted and timed: what vfiod's map
// path costs step by step (placement and plan, MAP_DMA, UNMAP_DMA), measured
// on the engine's own code rather than a re-creation of it.
#pragma once

#include <cstdint>
#include <memory>
#include <span>

#include "dma/contiguity.h"
#include "dma/engine.h"
#include "guest/rig.h"
#include "proto/result.h"

namespace vfiod::bench {

/// Page-info reads seen by a TimingReader.
struct ReadCounts {
  uint64_t calls = 0;    ///< pread calls on pagemap and kpageflags
  uint64_t entries = 0;  ///< 8-byte entries read
  double seconds = 0;    ///< time spent in those calls
};

/// Forwards to /proc/self/pagemap and /proc/kpageflags, counting and timing
/// every read. Not thread-safe, like the reader it wraps.
class TimingReader final : public dma::PageInfoReader {
 public:
  /// Errors: as dma::ProcPageInfoReader::Open.
  [[nodiscard]] static Result<std::unique_ptr<TimingReader>> Open();
  Result<void> ReadPagemap(uint64_t first_vpn, std::span<uint64_t> out) override;
  Result<void> ReadKpageflags(uint64_t first_pfn, std::span<uint64_t> out) override;

  /// The counts since the last Take(), which starts a new count.
  [[nodiscard]] ReadCounts Take();

 private:
  explicit TimingReader(std::unique_ptr<dma::ProcPageInfoReader> real) : real_(std::move(real)) {}
  std::unique_ptr<dma::ProcPageInfoReader> real_;
  ReadCounts counts_;
};

/// A DmaSpace of the daemon's engine on the rig's container, its reader
/// observable. The rig's raw maps must not be live while the space maps
/// (both use the same container; the space does not know the raw ones).
struct EngineRig {
  // Teardown: the space (which unmaps what is left) before nothing else of
  // ours; `reader` points into it.
  std::unique_ptr<dma::DmaSpace> space;
  TimingReader* reader = nullptr;
};

/// Creates the space with the daemon's default engine config (1 GiB chunks).
/// Errors: as dma::DmaSpace::Create and TimingReader::Open.
[[nodiscard]] Result<EngineRig> OpenEngine(const GuestRig& rig);

/// One map through the engine, timed in its two phases.
struct EngineMap {
  double plan_s = 0;  ///< DmaSpace::BeginMap: checks, placement (congruence), IOVA, chunk plan
  double map_s = 0;   ///< the job's steps: the MAP_DMA calls
  ReadCounts reads;   ///< page-info reads made while planning
  uint64_t id = 0;
  uint64_t iova = 0;
  uint64_t chunks = 0;
  dma::Congruence congruence;
};

/// Maps all of `backing` through `engine`, timing BeginMap and the steps.
/// Errors: those of DmaSpace::BeginMap and MapJob::Step.
[[nodiscard]] Result<EngineMap> EngineMapTimed(EngineRig& engine,
                                               std::shared_ptr<const dma::Backing> backing);

/// DmaSpace::Unmap of `id`, timed (seconds). Errors: those of Unmap.
[[nodiscard]] Result<double> EngineUnmapTimed(EngineRig& engine, uint64_t id);

}  // namespace vfiod::bench
