// Item 3: what the contiguity scan costs against the map it plans, per
// backing. The memory is made by the daemon's own backing factories and
// scanned as the engine scans it (the folio size it may assume per kind).
#include <cstdio>

#include "common/daemon_process.h"
#include "common/stats.h"
#include "dma/backing.h"
#include "dma/contiguity.h"
#include "guest/sections.h"

namespace vfiod::bench {
namespace {

struct Kind {
  const char* name;
  dma::BackingKind kind;
  uint64_t size;
};

Result<dma::Backing> MakeBacking(const Kind& k) {
  switch (k.kind) {
    case dma::BackingKind::kPages4K:
      return dma::CreatePagesBacking(k.size, true);
    case dma::BackingKind::kThp:
      return dma::CreateThpBacking(k.size, true);
    case dma::BackingKind::kHugetlb2M:
      return dma::CreateHugetlbBacking(k.size, dma::k2MiB);
    default:
      return dma::CreateHugetlbBacking(k.size, dma::k1GiB);
  }
}

// The folio size DmaSpace::Scan assumes for a whole backing of this kind
// (engine.cc, KnownFolioSize): hugetlb its page, 4K pages 4K, THP unknown.
uint64_t EngineFolioSize(const dma::Backing& b) {
  switch (b.kind()) {
    case dma::BackingKind::kHugetlb2M:
    case dma::BackingKind::kHugetlb1G:
      return b.page_size();
    case dma::BackingKind::kPages4K:
      return dma::kPage4K;
    default:
      return 0;
  }
}

Result<nlohmann::json> Measure(const GuestRig& rig, const Kind& k, int loops) {
  dma::Backing backing = VFIOD_TRY(MakeBacking(k));
  auto reader = VFIOD_TRY(dma::ProcPageInfoReader::Open());
  std::vector<double> scan_s;
  dma::ContiguityReport report;
  for (int i = -1; i < loops; ++i) {  // pass -1 warms up and is not counted
    Result<dma::ContiguityScan> scan = Fail(EINVAL, "scan");
    scan_s.push_back(TimeSeconds([&] {
      scan = dma::ScanContiguity(*reader, backing.vaddr(), k.size, EngineFolioSize(backing));
      if (scan) {
        (void)dma::ChooseCongruence(*scan, rig.iova_pgsizes());
      }
    }));
    report = VFIOD_TRY(std::move(scan)).report;
    if (i < 0) {
      scan_s.clear();
    }
  }
  Loops map = VFIOD_TRY(RawLoops(rig, backing.vaddr(), kRawIova, k.size, loops));
  const double fraction = Ratio(Mean(scan_s), Mean(map.map_s));
  std::fprintf(stderr, "  %-12s %6s %12.6f %12.6f %9.2f%% %8llu %8llu %8llu\n", k.name,
               SizeName(k.size).c_str(), Mean(scan_s), Mean(map.map_s), 100 * fraction,
               static_cast<unsigned long long>(report.run_count),
               static_cast<unsigned long long>(report.folios_2m),
               static_cast<unsigned long long>(report.folios_1g));
  return nlohmann::json{{"backing", k.name},
                        {"size", k.size},
                        {"scan", OpJson(scan_s, k.size)},
                        {"map", OpJson(map.map_s, k.size)},
                        {"fraction_of_map", fraction},
                        {"state", report.state == dma::PhysState::kKnown ? "known" : "unknown"},
                        {"runs", report.run_count},
                        {"folios_2m", report.folios_2m},
                        {"folios_1g", report.folios_1g}};
}

}  // namespace

nlohmann::json RunContiguityCost(const GuestRig& rig, const GuestOptions& options) {
  std::fprintf(stderr,
               "\n== 3. Contiguity detection (pagemap/kpageflags scan + congruence choice) as a "
               "fraction of the MAP_DMA time (avg of %d loops; target < 3%% for hugetlb/THP)\n",
               options.loops);
  std::fprintf(stderr, "  %-12s %6s %12s %12s %10s %8s %8s %8s\n", "backing", "size", "scan s",
               "map s", "fraction", "runs", "2M", "1G");
  const uint64_t size = options.sizes.empty() ? dma::kPage1G / 4 : options.sizes.front();
  const uint64_t pool_2m = ReadNumber("/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages");
  (void)SetHugepagePool(dma::kPage2M, std::max(pool_2m, size / dma::kPage2M));
  const Kind kinds[] = {{"4k", dma::BackingKind::kPages4K, size},
                        {"thp", dma::BackingKind::kThp, size},
                        {"hugetlb-2m", dma::BackingKind::kHugetlb2M, size},
                        {"hugetlb-1g", dma::BackingKind::kHugetlb1G, dma::kPage1G}};
  nlohmann::json rows = nlohmann::json::array();
  for (const Kind& k : kinds) {
    auto row = Measure(rig, k, options.loops);
    if (!row) {
      std::fprintf(stderr, "  %-12s %s\n", k.name, row.error().message().c_str());
      rows.push_back({{"backing", k.name}, {"error", row.error().message()}});
      continue;
    }
    rows.push_back(std::move(*row));
  }
  (void)SetHugepagePool(dma::kPage2M, pool_2m);
  return {{"loops", options.loops}, {"rows", rows}};
}

}  // namespace vfiod::bench
