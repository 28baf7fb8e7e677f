// Item 1: the DMA map table. Raw single ioctls of this process on its own
// memory, against the same kind and size of memory mapped through vfiod (a
// separate process), request to reply: a memfd registered once (dma.register,
// untimed), then dma.map_fd {region} / dma.free; and, as a second column, the
// one-shot dma.map_fd {fd} that passes and adopts the fd with every map.
#include <unistd.h>

#include <cstdio>
#include <numeric>

#include "client/vfiod_client.h"
#include "common/daemon_process.h"
#include "common/stats.h"
#include "guest/sections.h"
#include "vfioctl/bench_load.h"

namespace vfiod::bench {

Result<Loops> RawLoops(const GuestRig& rig, uint64_t vaddr, uint64_t iova, uint64_t size,
                       int loops) {
  // One untimed pair first: under TCG the first run of a kernel path pays
  // for translating it, which is not what the table is about.
  VFIOD_TRY(rig.Map(vaddr, iova, size));
  VFIOD_TRY(rig.Unmap(iova, size));
  Loops out;
  for (int i = 0; i < loops; ++i) {
    Result<void> mapped = Ok();
    out.map_s.push_back(TimeSeconds([&] { mapped = rig.Map(vaddr, iova, size); }));
    VFIOD_TRY(mapped);
    Result<void> unmapped = Ok();
    out.unmap_s.push_back(TimeSeconds([&] { unmapped = rig.Unmap(iova, size); }));
    VFIOD_TRY(unmapped);
  }
  return out;
}

double Mean(const std::vector<double>& samples) {
  return samples.empty() ? 0
                         : std::accumulate(samples.begin(), samples.end(), 0.0) /
                               static_cast<double>(samples.size());
}

nlohmann::json OpJson(const std::vector<double>& samples, uint64_t bytes) {
  return {{"mean_s", Mean(samples)}, {"gbps", GBps(bytes, Mean(samples))}, {"samples", samples}};
}

namespace {

void PrintColumn(const char* label, const std::vector<double>& map_s,
                 const std::vector<double>& unmap_s, uint64_t size) {
  std::fprintf(
      stderr,
      "    %-10s VFIO MAP DMA in %.5f s (%.1f GB/s)   VFIO UNMAP DMA in %.5f s (%.1f GB/s)\n",
      label, Mean(map_s), GBps(size, Mean(map_s)), Mean(unmap_s), GBps(size, Mean(unmap_s)));
}

// The daemon's own per-method time sums (stats.by_method), microseconds.
nlohmann::json ServerTimes(client::Client& c) {
  auto stats = c.Call("stats");
  return stats ? stats->result.value("by_method", nlohmann::json::object())
               : nlohmann::json::object();
}

// Mean server-side seconds of dma.map_fd and dma.free over `calls` calls.
nlohmann::json ServerDelta(const nlohmann::json& before, const nlohmann::json& after, int calls) {
  const auto delta = [&](const char* method) {
    const auto us = [&](const nlohmann::json& m) {
      return m.contains(method) ? m[method].value("total_us", 0.0) : 0.0;
    };
    return (us(after) - us(before)) / 1e6 / calls;
  };
  return {{"map_s", delta("dma.map_fd")}, {"free_s", delta("dma.free")}};
}

struct Vfiod {
  DaemonProcess daemon;
  client::Client client;
  uint64_t container = 0;
};

Result<Vfiod> StartVfiod(const GuestOptions& options) {
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
  auto made = client.Call("container.create", {{"devices", {options.edu_bdf}}});
  if (!made) {
    return Fail(EIO, "container.create", made.error().Describe());
  }
  const uint64_t container = made->result.at("container");
  return Vfiod{std::move(daemon), std::move(client), container};
}

// The vfiod figures of one way of mapping: request-to-reply timings and the
// daemon's own time for the same calls.
nlohmann::json VfiodJson(const vfioctl::MapTimings& t, const vfioctl::MapTimings& warm,
                         const nlohmann::json& server, uint64_t size) {
  return {{"map", OpJson(t.map_s, size)},
          {"unmap", OpJson(t.unmap_s, size)},
          {"ioctls", t.ioctls},
          {"chunks", t.chunks},
          {"iova", t.iova},
          {"warmup_s", {warm.map_s.front(), warm.unmap_s.front()}},
          {"server", server}};
}

// dma.map_fd {region} / dma.free of `fd` registered once (untimed, like the
// raw program's memory, touched before timing), after one untimed pair.
Result<nlohmann::json> RegionColumn(Vfiod& vfiod, int fd, uint64_t size, int loops,
                                    vfioctl::MapTimings& via) {
  const Clock::time_point start = Clock::now();
  const uint64_t region = VFIOD_TRY(vfioctl::RegisterRegion(vfiod.client, fd, size));
  const double register_s = SecondsSince(start);
  auto measured = [&]() -> Result<nlohmann::json> {
    const vfioctl::MapTimings warm =
        VFIOD_TRY(vfioctl::TimeMapRegion(vfiod.client, vfiod.container, region, size, 1));
    const nlohmann::json before = ServerTimes(vfiod.client);
    via = VFIOD_TRY(vfioctl::TimeMapRegion(vfiod.client, vfiod.container, region, size, loops));
    nlohmann::json column =
        VfiodJson(via, warm, ServerDelta(before, ServerTimes(vfiod.client), loops), size);
    column["register_s"] = register_s;
    return column;
  }();
  VFIOD_TRY(vfioctl::UnregisterRegion(vfiod.client, region));
  return measured;
}

// The one-shot dma.map_fd {fd} / dma.free: the daemon adopts the fd every time.
Result<nlohmann::json> OneShotColumn(Vfiod& vfiod, int fd, uint64_t size, int loops,
                                     vfioctl::MapTimings& via) {
  const vfioctl::MapTimings warm =
      VFIOD_TRY(vfioctl::TimeMapFd(vfiod.client, vfiod.container, fd, size, 1));
  const nlohmann::json before = ServerTimes(vfiod.client);
  via = VFIOD_TRY(vfioctl::TimeMapFd(vfiod.client, vfiod.container, fd, size, loops));
  return VfiodJson(via, warm, ServerDelta(before, ServerTimes(vfiod.client), loops), size);
}

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

void PrintRow(const nlohmann::json& row, const Loops& raw, const Loops& raw_memfd,
              const vfioctl::MapTimings& region, const vfioctl::MapTimings& oneshot,
              const Breakdown& parts, uint64_t size) {
  std::fprintf(
      stderr, "  %s, %s%s\n", row["memory"].get<std::string>().c_str(), SizeName(size).c_str(),
      row.contains("huge_fraction_raw") ? Format(" (huge: raw %.0f%%, memfd %.0f%%)",
                                                 100 * row["huge_fraction_raw"].get<double>(),
                                                 100 * row["huge_fraction_memfd"].get<double>())
                                              .c_str()
                                        : "");
  PrintColumn("raw", raw.map_s, raw.unmap_s, size);
  PrintColumn("raw memfd", raw_memfd.map_s, raw_memfd.unmap_s, size);
  PrintColumn("vfiod", region.map_s, region.unmap_s, size);
  PrintColumn("one-shot", oneshot.map_s, oneshot.unmap_s, size);
  std::fprintf(stderr,
               "    %-10s region: plan %.5f s (%llu page-info reads per map), MAP %.5f s | "
               "UNMAP %.5f s; one-shot adds adopt %.5f s, release %.5f s\n",
               "in-process", Mean(parts.plan_s),
               static_cast<unsigned long long>(
                   parts.plan_s.empty() ? 0 : parts.plan_reads.calls / parts.plan_s.size()),
               Mean(parts.map_s), Mean(parts.unmap_s), Mean(parts.adopt_s), Mean(parts.release_s));
  for (const char* column : {"vfiod", "vfiod_oneshot"}) {
    if (row.contains(column) && row[column].contains("server")) {
      std::fprintf(stderr, "    %-10s %s: server time map %.5f s, free %.5f s\n", "", column,
                   row[column]["server"]["map_s"].get<double>(),
                   row[column]["server"]["free_s"].get<double>());
    }
  }
  std::fprintf(stderr,
               "    %-10s the daemon's view: vaddr %% 2M = %#llx, %llu MiB of it PMD-mapped "
               "shmem; IOVA congruence %#llx\n",
               "", static_cast<unsigned long long>(parts.view_offset_2m),
               static_cast<unsigned long long>(parts.pmd_mapped >> 20),
               static_cast<unsigned long long>(parts.congruence));
  std::fprintf(stderr,
               "    %-10s map %.3f  unmap %.3f   (one-shot: map %.3f  unmap %.3f; vs raw memfd: "
               "map %.3f  unmap %.3f)\n",
               "ratio", row["ratio"]["map"].get<double>(), row["ratio"]["unmap"].get<double>(),
               row["ratio_oneshot"]["map"].get<double>(),
               row["ratio_oneshot"]["unmap"].get<double>(),
               row["ratio_vs_raw_memfd"]["map"].get<double>(),
               row["ratio_vs_raw_memfd"]["unmap"].get<double>());
}

// Throughput ratio raw / via (raw time / vfiod time), for map and unmap.
nlohmann::json Ratios(const Loops& raw, const vfioctl::MapTimings& via) {
  return {{"map", Ratio(Mean(raw.map_s), Mean(via.map_s))},
          {"unmap", Ratio(Mean(raw.unmap_s), Mean(via.unmap_s))}};
}

// One row: raw on anonymous memory, raw on a memfd, vfiod on that memfd
// (registered once, then mapped; and one-shot).
Result<nlohmann::json> MeasureRow(const GuestRig& rig, Vfiod& vfiod, MemKind kind, uint64_t size,
                                  int loops) {
  nlohmann::json row = {{"memory", MemKindName(kind)}, {"size", size}};
  Loops raw;
  {
    Buffer anon = VFIOD_TRY(MakeAnonBuffer(kind, size));
    if (kind == MemKind::kThp) {
      row["huge_fraction_raw"] = HugeFraction(anon.vaddr(), size);
    }
    raw = VFIOD_TRY(RawLoops(rig, anon.vaddr(), kRawIova, size, loops));
  }
  Buffer memfd = VFIOD_TRY(MakeMemfdBuffer(kind, size));
  if (kind == MemKind::kThp) {
    row["huge_fraction_memfd"] = HugeFraction(memfd.vaddr(), size);
  }
  Loops raw_memfd = VFIOD_TRY(RawLoops(rig, memfd.vaddr(), kRawIova, size, loops));
  vfioctl::MapTimings region;
  row["vfiod"] = VFIOD_TRY(RegionColumn(vfiod, memfd.fd.get(), size, loops, region));
  vfioctl::MapTimings oneshot;
  row["vfiod_oneshot"] = VFIOD_TRY(OneShotColumn(vfiod, memfd.fd.get(), size, loops, oneshot));
  const Breakdown parts = VFIOD_TRY(BreakDownMapFd(rig, memfd.fd.get(), size, loops));
  row["raw"] = {{"map", OpJson(raw.map_s, size)}, {"unmap", OpJson(raw.unmap_s, size)}};
  row["raw_memfd"] = {{"map", OpJson(raw_memfd.map_s, size)},
                      {"unmap", OpJson(raw_memfd.unmap_s, size)}};
  row["breakdown"] = BreakdownJson(parts, size);
  row["ratio"] = Ratios(raw, region);
  row["ratio_oneshot"] = Ratios(raw, oneshot);
  row["ratio_vs_raw_memfd"] = Ratios(raw_memfd, region);
  PrintRow(row, raw, raw_memfd, region, oneshot, parts, size);
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
  cases.push_back({MemKind::kHugetlb1G, dma::kPage1G});
  return cases;
}

}  // namespace

nlohmann::json RunMapTable(const GuestRig& rig, const GuestOptions& options) {
  std::fprintf(stderr,
               "\n== 1. DMA map table: average of %d loops; ratio = vfiod throughput / raw "
               "throughput (>= 0.97 is the target); vfiod = dma.map_fd of a region registered "
               "once, one-shot = dma.map_fd of the fd\n",
               options.loops);
  auto vfiod = StartVfiod(options);
  if (!vfiod) {
    std::fprintf(stderr, "  cannot start vfiod: %s\n", vfiod.error().message().c_str());
    return {{"error", vfiod.error().message()}};
  }
  // The RPC round trip in the guest, for reading the map figures: a request
  // to reply costs at least this much on top of the work.
  nlohmann::json ping;
  if (auto pings = vfioctl::CallLatencies(vfiod->daemon.socket(), "ping", 200); pings) {
    const Summary s = Summarize(*pings);
    ping = ToJson(s);
    std::fprintf(stderr, "  vfiod ping round trip in the guest: p50 %.1f us, p99 %.1f us\n",
                 s.p50 * 1e6, s.p99 * 1e6);
  }
  const uint64_t pool_2m = ReadNumber("/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages");
  nlohmann::json rows = nlohmann::json::array();
  for (const Case& c : Cases(options)) {
    if (c.kind == MemKind::kHugetlb2M) {
      (void)SetHugepagePool(dma::kPage2M, std::max(pool_2m, c.size / dma::kPage2M));
    }
    auto row = MeasureRow(rig, *vfiod, c.kind, c.size, options.loops);
    if (!row) {
      std::fprintf(stderr, "  %s, %s: %s\n", MemKindName(c.kind), SizeName(c.size).c_str(),
                   row.error().message().c_str());
      rows.push_back(
          {{"memory", MemKindName(c.kind)}, {"size", c.size}, {"error", row.error().message()}});
      continue;
    }
    rows.push_back(std::move(*row));
  }
  (void)SetHugepagePool(dma::kPage2M, pool_2m);
  auto stats = vfiod->client.Call("stats");
  return {{"loops", options.loops},
          {"ping_s", ping},
          {"rows", rows},
          {"vfiod_stats", stats ? stats->result : nlohmann::json(nullptr)}};
}

}  // namespace vfiod::bench
