// Item 1: the DMA map table. Raw single ioctls of this process on its own
// memory, against the same kind and size of memory mapped through vfiod (a
// separate process), request to reply: a memfd registered once (dma.register,
// untimed), then dma.map_fd {region} / dma.free; and, as a second column, the
// one-shot dma.map_fd {fd} that passes and adopts the fd with every map. The
// columns of a row run interleaved, round by round (map_rounds.h).
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <numeric>

#include "client/vfiod_client.h"
#include "common/daemon_process.h"
#include "common/stats.h"
#include "guest/map_rounds.h"
#include "guest/map_table_print.h"
#include "guest/sections.h"
#include "vfioctl/bench_load.h"

namespace vfiod::bench {

double Mean(const std::vector<double>& samples) {
  return samples.empty() ? 0
                         : std::accumulate(samples.begin(), samples.end(), 0.0) /
                               static_cast<double>(samples.size());
}

namespace {

// Idle pings after each round: the round trip measured at the same moments
// as the maps.
constexpr int kPingsPerRound = 10;

}  // namespace

Result<Vfiod> StartVfiod(const GuestOptions& options, const std::string& bdf) {
  char tmpl[] = "/tmp/vfiod-bench-XXXXXX";
  if (::mkdtemp(tmpl) == nullptr) {
    return ErrnoError("mkdtemp");
  }
  const nlohmann::json config = {{"socket", {{"group", nullptr}, {"mode", "0600"}}},
                                 {"kernel", "linux"},
                                 {"sysfs_root", "/sys"},
                                 {"limits", {{"map_chunk_bytes", "1G"}, {"worker_threads", 2}}},
                                 {"logging", {{"level", "warn"}, {"target", "stderr"}}},
                                 {"policy", {{"rules", nlohmann::json::array()}}}};
  DaemonProcess daemon = VFIOD_TRY(DaemonProcess::Start(options.vfiod, tmpl, config));
  client::Client client = VFIOD_TRY(client::Client::Connect(daemon.socket()));
  auto made = client.Call("container.create", {{"devices", {bdf}}});
  if (!made) {
    return Fail(EIO, "container.create", made.error().Describe());
  }
  const uint64_t container = made->result.at("container");
  return Vfiod{std::move(daemon), std::move(client), container};
}

namespace {

nlohmann::json BreakdownJson(const Breakdown& parts, uint64_t size) {
  return {{"register_once_s", parts.register_s},
          {"plan", OpJson(parts.plan_s, size)},
          {"plan_reads",
           {{"calls", parts.plan_reads.calls},
            {"entries", parts.plan_reads.entries},
            {"seconds", parts.plan_reads.seconds}}},
          {"map", OpJson(parts.map_s, size)},
          {"unmap", OpJson(parts.unmap_s, size)},
          {"oneshot_adopt", OpJson(parts.adopt_s, size)},
          {"oneshot_plan", OpJson(parts.oneshot_plan_s, size)},
          {"oneshot_map", OpJson(parts.oneshot_map_s, size)},
          {"oneshot_unmap", OpJson(parts.oneshot_unmap_s, size)},
          {"oneshot_release", OpJson(parts.release_s, size)},
          {"congruence", parts.congruence},
          {"view_vaddr_mod_2m", parts.view_offset_2m},
          {"view_shmem_pmd_mapped_bytes", parts.pmd_mapped}};
}

// Throughput ratios raw / via (raw time / vfiod time) of one statistic.
nlohmann::json RatioOf(const nlohmann::json& raw, const nlohmann::json& via, const char* stat) {
  return {{"map", Ratio(raw["map"][stat].get<double>(), via["map"][stat].get<double>())},
          {"unmap", Ratio(raw["unmap"][stat].get<double>(), via["unmap"][stat].get<double>())}};
}

// The median over rounds of raw / vfiod within the same round: a paired
// figure, robust to load that drifts between rounds.
double PairedMedian(const nlohmann::json& raw, const nlohmann::json& via, const char* op) {
  const auto& a = raw[op]["samples"];
  const auto& b = via[op]["samples"];
  std::vector<double> ratios;
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) {
    ratios.push_back(Ratio(a[i].get<double>(), b[i].get<double>()));
  }
  return Summarize(std::move(ratios)).p50;
}

// The ratios of a row, from its columns' JSON, and the bound a
// request-to-reply path cannot pass: raw / (raw + round trip), with the
// row's idle ping as the round trip: its mean, the bound of the ratio of
// means (the headline); and its p50, beside it.
void AddRatios(nlohmann::json& row) {
  const nlohmann::json& raw = row["raw"];
  row["ratio"] = RatioOf(raw, row["vfiod"], "mean_s");
  row["ratio_median"] = RatioOf(raw, row["vfiod"], "median_s");
  row["ratio_min"] = RatioOf(raw, row["vfiod"], "min_s");
  row["ratio_server"] = RatioOf(raw, row["vfiod"]["server"], "mean_s");
  row["ratio_paired_median"] = {{"map", PairedMedian(raw, row["vfiod"], "map")},
                                {"unmap", PairedMedian(raw, row["vfiod"], "unmap")}};
  row["ratio_oneshot"] = RatioOf(raw, row["vfiod_oneshot"], "mean_s");
  row["ratio_vs_raw_memfd"] = RatioOf(row["raw_memfd"], row["vfiod"], "mean_s");
  const auto bound = [&](const char* stat) -> nlohmann::json {
    const double round_trip = row["ping_s"][stat].get<double>();
    const auto of = [&](const char* op) {
      const double t = raw[op]["mean_s"].get<double>();
      return Ratio(t, t + round_trip);
    };
    return {{"map", of("map")}, {"unmap", of("unmap")}, {"round_trip_s", round_trip}};
  };
  row["bound"] = bound("mean");
  row["bound_p50_rt"] = bound("p50");
  // The target is out of reach through any request-to-reply path when the
  // round trip alone is more than 3% of the raw time (bound < 0.97).
  row["round_trip_over_3pct"] = {{"map", row["bound"]["map"].get<double>() < 0.97},
                                 {"unmap", row["bound"]["unmap"].get<double>() < 0.97}};
}

// The row's columns, measured interleaved: raw on `anon`, raw on `memfd`,
// vfiod on `region` (memfd registered) and vfiod one-shot on the memfd's fd.
Result<nlohmann::json> MeasureColumns(const GuestRig& rig, Vfiod& vfiod, const Buffer& anon,
                                      const Buffer& memfd, uint64_t region, int rounds) {
  const uint64_t size = memfd.size();
  const int fd = memfd.fd.get();
  std::vector<Column> columns;
  columns.push_back({"raw", RawPair(rig, anon.vaddr(), kRawIova, size), {}, {}});
  columns.push_back({"raw_memfd", RawPair(rig, memfd.vaddr(), kRawIova, size), {}, {}});
  columns.push_back(
      {"vfiod",
       VfiodPair(
           vfiod.client,
           [&] { return vfioctl::TimeMapRegion(vfiod.client, vfiod.container, region, size, 1); }),
       {},
       {}});
  columns.push_back(
      {"vfiod_oneshot",
       VfiodPair(vfiod.client,
                 [&] { return vfioctl::TimeMapFd(vfiod.client, vfiod.container, fd, size, 1); }),
       {},
       {}});
  const std::vector<double> pings = VFIOD_TRY(RunRounds(
      columns, rounds, [&] { return vfioctl::TimePing(vfiod.client); }, kPingsPerRound));
  nlohmann::json out = {
      {"rounds", rounds}, {"ping_s", ToJson(Summarize(pings))}, {"ping_samples_s", pings}};
  for (const Column& column : columns) {
    out[column.name] = ColumnJson(column, size);
  }
  return out;
}

// One row: raw on anonymous memory, raw on a memfd, vfiod on that memfd
// (registered once, then mapped; and one-shot), interleaved; then the
// breakdown of vfiod's steps in this process.
Result<nlohmann::json> MeasureRow(const GuestRig& rig, Vfiod& vfiod, MemKind kind, uint64_t size,
                                  const GuestOptions& options) {
  nlohmann::json row = {{"memory", MemKindName(kind)}, {"size", size}};
  Buffer memfd = VFIOD_TRY(MakeMemfdBuffer(kind, size));
  {
    Buffer anon = VFIOD_TRY(MakeAnonBuffer(kind, size));
    if (kind == MemKind::kThp) {
      row["huge_fraction_raw"] = HugeFraction(anon.vaddr(), size);
      row["huge_fraction_memfd"] = HugeFraction(memfd.vaddr(), size);
    }
    const Clock::time_point start = Clock::now();
    const uint64_t region = VFIOD_TRY(vfioctl::RegisterRegion(vfiod.client, memfd.fd.get(), size));
    const double register_s = SecondsSince(start);
    auto columns = MeasureColumns(rig, vfiod, anon, memfd, region, options.map_loops);
    VFIOD_TRY(vfioctl::UnregisterRegion(vfiod.client, region));
    if (!columns) {
      return std::unexpected(columns.error());
    }
    row.update(*columns);
    row["vfiod"]["register_s"] = register_s;
  }
  const Breakdown parts = VFIOD_TRY(BreakDownMapFd(rig, memfd.fd.get(), size, options.loops));
  row["breakdown"] = BreakdownJson(parts, size);
  AddRatios(row);
  PrintRow(row, parts);
  return row;
}

struct Case {
  MemKind kind;
  uint64_t size;
};

std::vector<Case> Cases(const GuestOptions& options) {
  std::vector<Case> cases;
  for (MemKind kind : {MemKind::kThp, MemKind::kPages4K, MemKind::kHugetlb2M}) {
    for (uint64_t size : options.sizes) {
      cases.push_back({kind, size});
    }
  }
  cases.push_back({MemKind::kHugetlb1G, vfiod::kPage1G});
  return cases;
}

// The pool of `page`-sized hugepages, grown to hold `pages` (the raw
// buffer and the memfd of a row live at the same time).
void EnsurePool(uint64_t page, uint64_t pages, uint64_t at_start) {
  if (auto now = SetHugepagePool(page, std::max(at_start, pages)); !now || *now < pages) {
    (void)std::fprintf(stderr, "  note: the %s hugepage pool holds fewer than %llu pages\n",
                       SizeName(page).c_str(), static_cast<unsigned long long>(pages));
  }
}

const char* kPool2M = "/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages";
const char* kPool1G = "/sys/kernel/mm/hugepages/hugepages-1048576kB/nr_hugepages";

}  // namespace

nlohmann::json RunMapTable(const GuestRig& rig, const GuestOptions& options) {
  (void)std::fprintf(
      stderr,
      "\n== 1. DMA map table: %d interleaved rounds (raw, raw memfd, vfiod, one-shot: one "
      "map/unmap pair each per round, rotating order), after one warm-up pair each; "
      "ratio = raw time / vfiod time (>= 0.97 is the target); vfiod = dma.map_fd of a "
      "region registered once, one-shot = dma.map_fd of the fd\n",
      options.map_loops);
  auto vfiod = StartVfiod(options, options.edu_bdf);
  if (!vfiod) {
    (void)std::fprintf(stderr, "  cannot start vfiod: %s\n", vfiod.error().message().c_str());
    return {{"error", vfiod.error().message()}};
  }
  nlohmann::json ping;
  if (auto pings = vfioctl::CallLatencies(vfiod->daemon.socket(), "ping", 200); pings) {
    const Summary s = Summarize(*pings);
    ping = ToJson(s);
    (void)std::fprintf(stderr, "  vfiod ping round trip in the guest: p50 %.1f us, p99 %.1f us\n",
                       s.p50 * 1e6, s.p99 * 1e6);
  }
  const uint64_t pool_2m = ReadNumber(kPool2M);
  const uint64_t pool_1g = ReadNumber(kPool1G);
  nlohmann::json rows = nlohmann::json::array();
  for (const Case& c : Cases(options)) {
    if (c.kind == MemKind::kHugetlb2M) {
      EnsurePool(vfiod::kPage2M, 2 * c.size / vfiod::kPage2M, pool_2m);
    } else if (c.kind == MemKind::kHugetlb1G) {
      EnsurePool(vfiod::kPage1G, 2 * c.size / vfiod::kPage1G, pool_1g);
    }
    auto row = MeasureRow(rig, *vfiod, c.kind, c.size, options);
    if (!row) {
      (void)std::fprintf(stderr, "  %s, %s: %s\n", MemKindName(c.kind), SizeName(c.size).c_str(),
                         row.error().message().c_str());
      rows.push_back(
          {{"memory", MemKindName(c.kind)}, {"size", c.size}, {"error", row.error().message()}});
      continue;
    }
    rows.push_back(std::move(*row));
  }
  (void)SetHugepagePool(vfiod::kPage2M, pool_2m);
  (void)SetHugepagePool(vfiod::kPage1G, pool_1g);
  PrintSummary(rows);
  auto stats = vfiod->client.Call("stats");
  return {{"loops", options.map_loops},
          {"breakdown_loops", options.loops},
          {"interleaved", true},
          {"ping_s", ping},
          {"rows", rows},
          {"vfiod_stats", stats ? stats->result : nlohmann::json(nullptr)}};
}

}  // namespace vfiod::bench
