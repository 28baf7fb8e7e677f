// Where the time of a map through vfiod goes: the daemon's steps for
// dma.register + dma.map_fd {region} / dma.free, and for the one-shot
// dma.map_fd {fd}, redone here with the daemon's own dma-layer code.
#include <fcntl.h>

#include <fstream>
#include <memory>
#include <string>

#include "common/stats.h"
#include "dma/backing.h"
#include "guest/engine_probe.h"
#include "guest/sections.h"

namespace vfiod::bench {
namespace {

// A "Name: N kB" field of /proc/self/smaps_rollup, in bytes.
uint64_t SmapsRollup(const std::string& name) {
  std::ifstream in("/proc/self/smaps_rollup");
  for (std::string line; std::getline(in, line);) {
    if (line.starts_with(name + ":")) {
      return std::stoull(line.substr(name.size() + 1)) << 10;
    }
  }
  return 0;
}

// The daemon's adoption of the client's fd (it receives a copy of it).
Result<std::shared_ptr<const dma::Backing>> Adopt(int fd, uint64_t size, double& seconds) {
  UniqueFd copy(::fcntl(fd, F_DUPFD_CLOEXEC, 0));
  if (!copy) {
    return ErrnoError("dup");
  }
  Result<dma::Backing> adopted = Fail(EINVAL, "adopt");
  seconds = TimeSeconds([&] { adopted = dma::AdoptClientFd(std::move(copy), 0, size); });
  return std::make_shared<const dma::Backing>(VFIOD_TRY(std::move(adopted)));
}

// One region pass: map and unmap an adopted view; appends its timings.
Result<void> RegionPass(EngineRig& engine, const std::shared_ptr<const dma::Backing>& view,
                        Breakdown& out) {
  const EngineMap mapped = VFIOD_TRY(EngineMapTimed(engine, view));
  out.plan_s.push_back(mapped.plan_s);
  out.map_s.push_back(mapped.map_s);
  out.plan_reads.calls += mapped.reads.calls;
  out.plan_reads.entries += mapped.reads.entries;
  out.plan_reads.seconds += mapped.reads.seconds;
  out.congruence = mapped.congruence.modulus;
  out.unmap_s.push_back(VFIOD_TRY(EngineUnmapTimed(engine, mapped.id)));
  return Ok();
}

// One one-shot pass: adopt, map, unmap, release; appends its timings.
Result<void> OneShotPass(EngineRig& engine, int fd, uint64_t size, Breakdown& out) {
  double adopt_s = 0;
  std::shared_ptr<const dma::Backing> view = VFIOD_TRY(Adopt(fd, size, adopt_s));
  out.adopt_s.push_back(adopt_s);
  const EngineMap mapped = VFIOD_TRY(EngineMapTimed(engine, view));
  out.oneshot_plan_s.push_back(mapped.plan_s);
  out.oneshot_map_s.push_back(mapped.map_s);
  out.oneshot_unmap_s.push_back(VFIOD_TRY(EngineUnmapTimed(engine, mapped.id)));
  out.release_s.push_back(TimeSeconds([&] { view.reset(); }));  // the last share
  return Ok();
}

}  // namespace

Result<Breakdown> BreakDownMapFd(const GuestRig& rig, int fd, uint64_t size, int loops) {
  EngineRig engine = VFIOD_TRY(OpenEngine(rig));
  Breakdown out;
  const uint64_t pmd_before = SmapsRollup("ShmemPmdMapped");
  std::shared_ptr<const dma::Backing> view = VFIOD_TRY(Adopt(fd, size, out.register_s));
  out.view_offset_2m = view->vaddr() % vfiod::kPage2M;
  {
    // Untimed warm-up pair (TCG translates a kernel path on its first run);
    // whether THPs got PMD-mapped in the view is read while it is mapped.
    const EngineMap warm = VFIOD_TRY(EngineMapTimed(engine, view));
    out.pmd_mapped = SmapsRollup("ShmemPmdMapped") - pmd_before;
    VFIOD_TRY(EngineUnmapTimed(engine, warm.id));
  }
  for (int i = 0; i < loops; ++i) {
    VFIOD_TRY(RegionPass(engine, view, out));
  }
  view.reset();
  Breakdown warmup;
  VFIOD_TRY(OneShotPass(engine, fd, size, warmup));
  for (int i = 0; i < loops; ++i) {
    VFIOD_TRY(OneShotPass(engine, fd, size, out));
  }
  return out;
}

}  // namespace vfiod::bench
