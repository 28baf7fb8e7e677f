// Item 3: what placement costs against the map it plans, per backing, as the
// daemon's map path runs it: the engine's DmaSpace::BeginMap (checks,
// congruence from the backing's geometry or from page-info reads, IOVA, chunk
// plan) timed against the MAP_DMA steps of the same map, with every pagemap
// and kpageflags read counted. The full contiguity report (runs, folios), no
// longer on the map path, is timed separately as dma.info computes it.
#include <cstdio>

#include "common/daemon_process.h"
#include "common/stats.h"
#include "dma/backing.h"
#include "guest/engine_probe.h"
#include "guest/sections.h"
#include "vfioctl/bench_load.h"

namespace vfiod::bench {
namespace {

struct Kind {
  const char* name;
  dma::BackingKind kind;  // kMemfd: a client's THP memfd, adopted (a registered region)
  uint64_t size;
};

Result<dma::Backing> AdoptThpMemfd(uint64_t size) {
  void* view = nullptr;
  UniqueFd fd = VFIOD_TRY(vfioctl::MakeMemfd(size, 0, true, &view));
  dma::MappedMemory client_view(view, size);  // the client's own view goes; the file stays
  return dma::AdoptClientFd(std::move(fd), 0, size);
}

Result<dma::Backing> MakeBacking(const Kind& k) {
  switch (k.kind) {
    case dma::BackingKind::k4K:
      return dma::CreatePagesBacking(k.size, true);
    case dma::BackingKind::kThp:
      return dma::CreateThpBacking(k.size, true);
    case dma::BackingKind::kHugetlb2M:
      return dma::CreateHugetlbBacking(k.size, vfiod::kPage2M);
    case dma::BackingKind::kMemfd:
      return AdoptThpMemfd(k.size);
    default:
      return dma::CreateHugetlbBacking(k.size, vfiod::kPage1G);
  }
}

// The full report, as dma.info asks the engine for it, timed while mapped.
Result<std::pair<double, dma::ContiguityReport>> OnDemandReport(EngineRig& engine, uint64_t id) {
  Result<dma::ContiguityReport> report = Fail(EINVAL, "contiguity");
  const double seconds = TimeSeconds([&] { report = engine.space->Contiguity(id); });
  return std::pair{seconds, VFIOD_TRY(std::move(report))};
}

struct Samples {
  EngineMap first;  // the first map of the backing (nothing cached yet)
  std::vector<double> plan_s;
  std::vector<double> map_s;
  std::vector<double> report_s;
  ReadCounts reads;  // of the timed plans together
  dma::ContiguityReport report;
};

Result<Samples> Sample(const GuestRig& rig, const std::shared_ptr<const dma::Backing>& backing,
                       int loops) {
  EngineRig engine = VFIOD_TRY(OpenEngine(rig));
  Samples out;
  out.first = VFIOD_TRY(EngineMapTimed(engine, backing));
  (void)VFIOD_TRY(OnDemandReport(engine, out.first.id));  // warm-up
  VFIOD_TRY(EngineUnmapTimed(engine, out.first.id));
  for (int i = 0; i < loops; ++i) {
    const EngineMap m = VFIOD_TRY(EngineMapTimed(engine, backing));
    out.plan_s.push_back(m.plan_s);
    out.map_s.push_back(m.map_s);
    out.reads.calls += m.reads.calls;
    out.reads.entries += m.reads.entries;
    out.reads.seconds += m.reads.seconds;
    auto [seconds, report] = VFIOD_TRY(OnDemandReport(engine, m.id));
    out.report_s.push_back(seconds);
    out.report = std::move(report);
    VFIOD_TRY(EngineUnmapTimed(engine, m.id));
  }
  return out;
}

Result<nlohmann::json> Measure(const GuestRig& rig, const Kind& k, int loops) {
  auto backing = std::make_shared<const dma::Backing>(VFIOD_TRY(MakeBacking(k)));
  const Samples s = VFIOD_TRY(Sample(rig, backing, loops));
  const double fraction = Ratio(Mean(s.plan_s), Mean(s.map_s));
  const double report_fraction = Ratio(Mean(s.report_s), Mean(s.map_s));
  const double reads_per_map = Ratio(static_cast<double>(s.reads.calls), loops);
  (void)std::fprintf(
      stderr, "  %-12s %5s %11.6f %11.6f %7.0f %11.6f %8.2f%% %11.6f %8.1f%% %6llu %5llu %3llu\n",
      k.name, SizeName(k.size).c_str(), s.first.plan_s, Mean(s.plan_s), reads_per_map,
      Mean(s.map_s), 100 * fraction, Mean(s.report_s), 100 * report_fraction,
      static_cast<unsigned long long>(s.report.run_count),
      static_cast<unsigned long long>(s.report.folios_2m),
      static_cast<unsigned long long>(s.report.folios_1g));
  return nlohmann::json{{"backing", k.name},
                        {"size", k.size},
                        {"first_plan_s", s.first.plan_s},
                        {"first_plan_reads", s.first.reads.calls},
                        {"plan", OpJson(s.plan_s, k.size)},
                        {"plan_reads",
                         {{"calls_per_map", reads_per_map},
                          {"entries_per_map", Ratio(static_cast<double>(s.reads.entries), loops)},
                          {"seconds_per_map", s.reads.seconds / loops}}},
                        {"map", OpJson(s.map_s, k.size)},
                        {"fraction_of_map", fraction},
                        {"congruence", s.first.congruence.modulus},
                        {"chunks", s.first.chunks},
                        {"report_on_demand", OpJson(s.report_s, k.size)},
                        {"report_fraction_of_map", report_fraction},
                        {"state", s.report.state == dma::PhysState::kKnown ? "known" : "unknown"},
                        {"runs", s.report.run_count},
                        {"folios_2m", s.report.folios_2m},
                        {"folios_1g", s.report.folios_1g}};
}

}  // namespace

nlohmann::json RunContiguityCost(const GuestRig& rig, const GuestOptions& options) {
  (void)std::fprintf(stderr,
                     "\n== 3. Placement on the map path (the engine's BeginMap: congruence, IOVA, "
                     "plan) as a fraction of MAP_DMA (avg of %d loops; target < 3%% for "
                     "hugetlb/THP); the full report on demand (dma.info) beside it\n",
                     options.loops);
  (void)std::fprintf(stderr, "  %-12s %5s %11s %11s %7s %11s %9s %11s %9s %6s %5s %3s\n", "backing",
                     "size", "1st plan s", "plan s", "reads", "MAP_DMA s", "fraction", "report s",
                     "of map", "runs", "2M", "1G");
  const uint64_t size = options.sizes.empty() ? vfiod::kPage1G / 4 : options.sizes.front();
  const uint64_t pool_2m = ReadNumber("/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages");
  (void)SetHugepagePool(vfiod::kPage2M, std::max(pool_2m, size / vfiod::kPage2M));
  const Kind kinds[] = {{"4k", dma::BackingKind::k4K, size},
                        {"thp", dma::BackingKind::kThp, size},
                        {"client-thp", dma::BackingKind::kMemfd, size},
                        {"hugetlb-2m", dma::BackingKind::kHugetlb2M, size},
                        {"hugetlb-1g", dma::BackingKind::kHugetlb1G, vfiod::kPage1G}};
  nlohmann::json rows = nlohmann::json::array();
  for (const Kind& k : kinds) {
    auto row = Measure(rig, k, options.loops);
    if (!row) {
      (void)std::fprintf(stderr, "  %-12s %s\n", k.name, row.error().message().c_str());
      rows.push_back({{"backing", k.name}, {"error", row.error().message()}});
      continue;
    }
    rows.push_back(std::move(*row));
  }
  (void)SetHugepagePool(vfiod::kPage2M, pool_2m);
  return {{"loops", options.loops}, {"rows", rows}};
}

}  // namespace vfiod::bench
