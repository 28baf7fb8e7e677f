// Item 2: batching. A scatter list of 4 KiB pages forming physically and
// virtually contiguous runs of L pages (runs separated in IOVA, so they cannot
// merge), mapped naively (one MAP_DMA per page) and through the planner (one
// per run); unmapped the same two ways.
#include <cstdio>

#include "common/stats.h"
#include "dma/planner.h"
#include "guest/sections.h"

namespace vfiod::bench {
namespace {

constexpr uint64_t kPages = 4096;  // 16 MiB of 4 KiB pages

struct Method {
  std::vector<double> map_s;
  std::vector<double> unmap_s;
  uint64_t map_ioctls = 0;    // per loop
  uint64_t unmap_ioctls = 0;  // per loop
};

// Page i of run r sits at vaddr base + (r*L + i)*4K and IOVA kRawIova + (r*(L+1) + i)*4K.
std::vector<dma::MapRange> ScatterList(uint64_t vaddr, uint64_t run) {
  std::vector<dma::MapRange> segments;
  for (uint64_t page = 0; page < kPages; ++page) {
    const uint64_t r = page / run;
    const uint64_t iova = kRawIova + (r * (run + 1) + page % run) * vfiod::kPage4K;
    dma::MapRange s;
    s.vaddr = vaddr + page * vfiod::kPage4K;
    s.iova = iova;
    s.size = vfiod::kPage4K;
    segments.push_back(s);
  }
  return segments;
}

Result<void> Naive(const GuestRig& rig, const std::vector<dma::MapRange>& segments, Method& m) {
  Result<void> status = Ok();
  m.map_s.push_back(TimeSeconds([&] {
    for (const dma::MapRange& s : segments) {
      if (status = rig.Map(s.vaddr, s.iova, s.size); !status) {
        return;
      }
    }
  }));
  VFIOD_TRY(status);
  m.unmap_s.push_back(TimeSeconds([&] {
    for (const dma::MapRange& s : segments) {
      if (status = rig.Unmap(s.iova, s.size); !status) {
        return;
      }
    }
  }));
  m.map_ioctls = m.unmap_ioctls = segments.size();
  return status;
}

Result<void> Planned(const GuestRig& rig, const std::vector<dma::MapRange>& segments, Method& m) {
  Result<void> status = Ok();
  std::vector<dma::Entry> live;
  m.map_s.push_back(TimeSeconds([&] {
    auto ops = dma::PlanMaps(segments, {});
    if (!ops) {
      status = std::unexpected(ops.error());
      return;
    }
    for (const dma::MapArgs& op : *ops) {
      if (status = rig.Map(op.vaddr, op.iova, op.size); !status) {
        return;
      }
      live.push_back({op.iova, op.size});
    }
  }));
  VFIOD_TRY(status);
  m.map_ioctls = live.size();
  m.unmap_s.push_back(TimeSeconds([&] {
    auto ops = dma::PlanUnmaps(live, live, false);
    if (!ops) {
      status = std::unexpected(ops.error());
      return;
    }
    m.unmap_ioctls = ops->size();
    for (const dma::UnmapArgs& op : *ops) {
      auto done = rig.container()->Unmap(op.iova, op.size);
      if (!done) {
        status = std::unexpected(done.error());
        return;
      }
      if (*done != op.expected_bytes) {
        status = Fail(EIO, "VFIO_IOMMU_UNMAP_DMA", "byte count mismatch");
        return;
      }
    }
  }));
  return status;
}

}  // namespace

nlohmann::json RunBatching(const GuestRig& rig, const GuestOptions& options) {
  (void)std::fprintf(
      stderr,
      "\n== 2. Batching: %llu pages of 4 KiB in runs of L pages; naive = one MAP_DMA per "
      "page, planner = one per run (avg of %d loops)\n",
      static_cast<unsigned long long>(kPages), options.loops);
  (void)std::fprintf(stderr, "  %5s %8s %12s %12s %8s | %10s %10s %12s %12s %8s\n", "L", "runs",
                     "naive map s", "plan map s", "speedup", "naive ioc", "plan ioc", "naive unmap",
                     "plan unmap", "speedup");
  auto buf = MakeAnonBuffer(MemKind::kPages4K, kPages * vfiod::kPage4K);
  if (!buf) {
    return {{"error", buf.error().message()}};
  }
  nlohmann::json rows = nlohmann::json::array();
  for (uint64_t run : {1, 8, 64, 512}) {
    const std::vector<dma::MapRange> segments = ScatterList(buf->vaddr(), run);
    Method warm;  // one untimed pass of each first (TCG translates new kernel paths once)
    if (auto ok = Naive(rig, segments, warm); ok) {
      (void)Planned(rig, segments, warm);
    }
    Method naive;
    Method planned;
    for (int i = 0; i < options.loops; ++i) {
      auto a = Naive(rig, segments, naive);
      auto b = a ? Planned(rig, segments, planned) : a;
      if (!b) {
        (void)std::fprintf(stderr, "  L=%llu: %s\n", static_cast<unsigned long long>(run),
                           b.error().message().c_str());
        rows.push_back({{"run_pages", run}, {"error", b.error().message()}});
        break;
      }
    }
    if (planned.map_s.size() != static_cast<size_t>(options.loops)) {
      continue;
    }
    const double map_speedup = Ratio(Mean(naive.map_s), Mean(planned.map_s));
    const double unmap_speedup = Ratio(Mean(naive.unmap_s), Mean(planned.unmap_s));
    (void)std::fprintf(
        stderr, "  %5llu %8llu %12.5f %12.5f %7.1fx | %10llu %10llu %12.5f %12.5f %7.1fx\n",
        static_cast<unsigned long long>(run), static_cast<unsigned long long>(kPages / run),
        Mean(naive.map_s), Mean(planned.map_s), map_speedup,
        static_cast<unsigned long long>(naive.map_ioctls),
        static_cast<unsigned long long>(planned.map_ioctls), Mean(naive.unmap_s),
        Mean(planned.unmap_s), unmap_speedup);
    rows.push_back({{"run_pages", run},
                    {"runs", kPages / run},
                    {"naive",
                     {{"map_ioctls", naive.map_ioctls},
                      {"unmap_ioctls", naive.unmap_ioctls},
                      {"map", OpJson(naive.map_s, kPages * vfiod::kPage4K)},
                      {"unmap", OpJson(naive.unmap_s, kPages * vfiod::kPage4K)}}},
                    {"planner",
                     {{"map_ioctls", planned.map_ioctls},
                      {"unmap_ioctls", planned.unmap_ioctls},
                      {"map", OpJson(planned.map_s, kPages * vfiod::kPage4K)},
                      {"unmap", OpJson(planned.unmap_s, kPages * vfiod::kPage4K)}}},
                    {"map_speedup", map_speedup},
                    {"unmap_speedup", unmap_speedup}});
  }
  return {{"pages", kPages}, {"loops", options.loops}, {"rows", rows}};
}

}  // namespace vfiod::bench
