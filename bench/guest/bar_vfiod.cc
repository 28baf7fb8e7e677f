// Item 5, second part: dma.map_bar through vfiod against raw ioctls on the
// same ivshmem BAR. One process cannot hold the BAR's group twice, so the
// columns cannot interleave: raw (a rig of this process), then vfiod (the
// daemon's container holds the group), then raw again; the raw figures are
// both raw phases together, so a drift of the machine shows as their spread.
// vfiod mmaps a BAR at the first dma.map_bar of it in a container and keeps
// that view until the container closes, so from the second map on its work
// is raw's "warm" column (MAP_DMA of a BAR mmap'd and touched once, before
// the loops); "fresh" (mmap + MAP_DMA, UNMAP_DMA + munmap) is what a client
// mapping the BAR itself, once per map, would pay. Both ratios are given.

#include <cstdio>
#include <map>
#include <optional>
#include <string>

#include "client/vfiod_client.h"
#include "common/daemon_process.h"
#include "common/stats.h"
#include "guest/sections.h"
#include "vfio/region.h"
#include "vfioctl/bench_load.h"

namespace vfiod::bench {
namespace {

constexpr uint32_t kIvshmemBar = 2;
constexpr uint64_t kBarIova = uint64_t{8} << 30;  // aligned for any BAR up to 8 GiB
constexpr int kPingsPerLoop = 5;

struct RawPhase {
  Loops fresh;
  Loops warm;
  uint64_t bar_size = 0;
};

/// `loops` pairs of each raw column on a rig of its own (opened here and
/// closed on return, so vfiod can take the group next).
Result<RawPhase> MeasureRaw(const GuestOptions& options, int loops) {
  std::unique_ptr<GuestRig> rig = VFIOD_TRY(GuestRig::Open(options.nvme_bdf, options.ivshmem_bdf));
  vfio::RegionMapping warm = VFIOD_TRY(vfio::RegionMapping::Map(rig->bar_device(), kIvshmemBar));
  (void)*reinterpret_cast<volatile uint32_t*>(warm.data());
  const auto warm_va = reinterpret_cast<uint64_t>(warm.data());
  const uint64_t size = warm.size();
  RawPhase out;
  out.bar_size = size;
  for (int i = 0; i <= loops; ++i) {  // pair 0 warms the kernel paths up (TCG)
    Clock::time_point start = Clock::now();
    std::optional<vfio::RegionMapping> fresh =
        VFIOD_TRY(vfio::RegionMapping::Map(rig->bar_device(), kIvshmemBar));
    VFIOD_TRY(rig->Map(reinterpret_cast<uint64_t>(fresh->data()), kBarIova, size));
    const double fresh_map = SecondsSince(start);
    start = Clock::now();
    VFIOD_TRY(rig->Unmap(kBarIova, size));
    fresh.reset();
    const double fresh_unmap = SecondsSince(start);
    start = Clock::now();
    VFIOD_TRY(rig->Map(warm_va, kBarIova, size));
    const double warm_map = SecondsSince(start);
    start = Clock::now();
    VFIOD_TRY(rig->Unmap(kBarIova, size));
    const double warm_unmap = SecondsSince(start);
    if (i > 0) {
      out.fresh.map_s.push_back(fresh_map);
      out.fresh.unmap_s.push_back(fresh_unmap);
      out.warm.map_s.push_back(warm_map);
      out.warm.unmap_s.push_back(warm_unmap);
    }
  }
  return out;
}

/// The total seconds `stats` reports for `method`. Errors: EIO.
Result<double> ServerSeconds(client::Client& client, const char* method) {
  auto stats = client.Call("stats");
  if (!stats) {
    return Fail(EIO, "stats", stats.error().Describe());
  }
  const nlohmann::json by = stats->result.value("by_method", nlohmann::json::object());
  return by.contains(method) ? by[method].value("total_us", 0.0) / 1e6 : 0.0;
}

/// Seconds per stage (`stats`' stages_us) of `method`, by stage name
/// (empty from a daemon without stages). Errors: EIO.
Result<std::map<std::string, double>> ServerStages(client::Client& client, const char* method) {
  auto stats = client.Call("stats");
  if (!stats) {
    return Fail(EIO, "stats", stats.error().Describe());
  }
  std::map<std::string, double> out;
  const nlohmann::json by = stats->result.value("by_method", nlohmann::json::object());
  if (by.contains(method) && by[method].contains("stages_us")) {
    for (const auto& [stage, us] : by[method]["stages_us"].items()) {
      out[stage] = us.get<double>() / 1e6;
    }
  }
  return out;
}

/// Appends each stage's growth from `before` to `after` (one call's) to
/// `to`, and the call's handler time (its own stages: all but parse, queue
/// and reply) to `own`.
void AddStages(const std::map<std::string, double>& before,
               const std::map<std::string, double>& after,
               std::map<std::string, std::vector<double>>& to, std::vector<double>& own) {
  double handler = 0;
  for (const auto& [stage, seconds] : after) {
    auto was = before.find(stage);
    const double grew = seconds - (was == before.end() ? 0.0 : was->second);
    to[stage].push_back(grew);
    handler += stage == "parse" || stage == "queue" || stage == "reply" ? 0.0 : grew;
  }
  own.push_back(handler);
}

/// {stage: {"mean_s", "median_s"}} of per-call samples.
nlohmann::json StagesJson(const std::map<std::string, std::vector<double>>& stages) {
  nlohmann::json out = nlohmann::json::object();
  for (const auto& [stage, samples] : stages) {
    out[stage] = {{"mean_s", Mean(samples)}, {"median_s", Summarize(samples).p50}};
  }
  return out;
}

struct VfiodPhase {
  Loops calls;
  double server_map_s = 0;   ///< the daemon's own time per dma.map_bar (stats), mean
  double server_free_s = 0;  ///< likewise per dma.free
  /// Per call, by stage (stats' stages_us, read around every pair): samples.
  std::map<std::string, std::vector<double>> server_map_stages;
  std::map<std::string, std::vector<double>> server_free_stages;
  Loops server_calls;           ///< the daemon's own time per call: the sum of its handler stages
  double open_s = 0;            ///< device.open of the BAR's device, the first
  std::vector<double> first_s;  ///< the first dma.map_bar + dma.free (warm-up)
  std::vector<double> ping_s;
  uint64_t iova = 0;
  bool aligned = false;
};

/// `loops` dma.map_bar + dma.free pairs, request to reply, in a container of
/// a vfiod started here that holds the BAR's device; pings after each pair.
Result<VfiodPhase> MeasureVfiod(const GuestOptions& options, int loops) {
  Vfiod vfiod = VFIOD_TRY(StartVfiod(options, options.ivshmem_bdf));
  client::Client& client = vfiod.client;
  const uint64_t container = vfiod.container;
  VfiodPhase out;
  // vfiod opens a device on its first use in a container; that open (the
  // kernel enables the PCI function) is timed apart from the maps.
  Clock::time_point start = Clock::now();
  auto opened =
      client.Call("device.open", {{"container", container}, {"bdf", options.ivshmem_bdf}});
  out.open_s = SecondsSince(start);
  if (!opened) {
    return Fail(EIO, "device.open", opened.error().Describe());
  }
  for (int i = 0; i <= loops; ++i) {
    // Untimed: the stages before this pair (only its two calls and pings,
    // another method, run until the next read).
    const auto map_before = VFIOD_TRY(ServerStages(client, "dma.map_bar"));
    const auto free_before = VFIOD_TRY(ServerStages(client, "dma.free"));
    start = Clock::now();
    auto mapped =
        client.Call("dma.map_bar",
                    {{"container", container}, {"bdf", options.ivshmem_bdf}, {"bar", kIvshmemBar}});
    const double map_s = SecondsSince(start);
    if (!mapped) {
      return Fail(EIO, "dma.map_bar", mapped.error().Describe());
    }
    out.iova = mapped->result.at("iova");
    out.aligned = mapped->result.at("aligned");
    start = Clock::now();
    auto freed = client.Call("dma.free", {{"mapping", mapped->result.at("mapping")}});
    const double free_s = SecondsSince(start);
    if (!freed) {
      return Fail(EIO, "dma.free", freed.error().Describe());
    }
    if (i == 0) {
      out.first_s = {map_s, free_s};
      out.server_map_s = -VFIOD_TRY(ServerSeconds(client, "dma.map_bar"));
      out.server_free_s = -VFIOD_TRY(ServerSeconds(client, "dma.free"));
      continue;
    }
    AddStages(map_before, VFIOD_TRY(ServerStages(client, "dma.map_bar")), out.server_map_stages,
              out.server_calls.map_s);
    AddStages(free_before, VFIOD_TRY(ServerStages(client, "dma.free")), out.server_free_stages,
              out.server_calls.unmap_s);
    out.calls.map_s.push_back(map_s);
    out.calls.unmap_s.push_back(free_s);
    for (int p = 0; p < kPingsPerLoop; ++p) {
      out.ping_s.push_back(VFIOD_TRY(vfioctl::TimePing(client)));
    }
  }
  // Untimed, after the loops: the daemon's totals grew by the loops' calls.
  out.server_map_s = (out.server_map_s + VFIOD_TRY(ServerSeconds(client, "dma.map_bar"))) / loops;
  out.server_free_s = (out.server_free_s + VFIOD_TRY(ServerSeconds(client, "dma.free"))) / loops;
  return out;
}

nlohmann::json Pair(const Loops& l, uint64_t size) {
  return {{"map", OpJson(l.map_s, size)}, {"unmap", OpJson(l.unmap_s, size)}};
}

void Append(Loops& to, const Loops& from) {
  to.map_s.insert(to.map_s.end(), from.map_s.begin(), from.map_s.end());
  to.unmap_s.insert(to.unmap_s.end(), from.unmap_s.begin(), from.unmap_s.end());
}

void PrintRow(const char* label, const Loops& l, uint64_t size) {
  (void)std::fprintf(stderr, "  %-34s MAP %.5f s (%.1f GB/s)  UNMAP %.5f s\n", label, Mean(l.map_s),
                     GBps(size, Mean(l.map_s)), Mean(l.unmap_s));
}

Result<nlohmann::json> Measure(const GuestOptions& options) {
  const RawPhase before = VFIOD_TRY(MeasureRaw(options, options.loops));
  const VfiodPhase vfiod = VFIOD_TRY(MeasureVfiod(options, options.loops));
  const RawPhase after = VFIOD_TRY(MeasureRaw(options, options.loops));
  Loops fresh = before.fresh;
  Append(fresh, after.fresh);
  Loops warm = before.warm;
  Append(warm, after.warm);
  const uint64_t size = before.bar_size;
  PrintRow("raw: mmap + MAP_DMA (fresh)", fresh, size);
  PrintRow("raw: MAP_DMA of a touched mmap", warm, size);
  PrintRow("vfiod: dma.map_bar / dma.free", vfiod.calls, size);
  (void)std::fprintf(stderr, "  %-34s MAP %.5f s                    UNMAP %.5f s\n",
                     "vfiod: the daemon's own time", vfiod.server_map_s, vfiod.server_free_s);
  for (const auto* part : {&vfiod.server_map_stages, &vfiod.server_free_stages}) {
    std::string line;
    for (const auto& [stage, samples] : *part) {
      line += " " + stage + " " + std::to_string(Summarize(samples).p50 * 1e3);
    }
    (void)std::fprintf(
        stderr, "  %-34s%s (ms, medians)\n",
        part == &vfiod.server_map_stages ? "vfiod: dma.map_bar stages" : "vfiod: dma.free stages",
        line.c_str());
  }
  const Summary ping = Summarize(vfiod.ping_s);
  const double map_ratio = Ratio(Mean(fresh.map_s), Mean(vfiod.calls.map_s));
  const double unmap_ratio = Ratio(Mean(fresh.unmap_s), Mean(vfiod.calls.unmap_s));
  const double warm_map_ratio = Ratio(Mean(warm.map_s), Mean(vfiod.calls.map_s));
  const double warm_unmap_ratio = Ratio(Mean(warm.unmap_s), Mean(vfiod.calls.unmap_s));
  (void)std::fprintf(
      stderr,
      "  raw (fresh) / vfiod: map %.3f, unmap %.3f; device.open first %.5f s, then the first "
      "dma.map_bar %.5f s; idle round trip p50 %.1f us\n",
      map_ratio, unmap_ratio, vfiod.open_s, vfiod.first_s.empty() ? 0.0 : vfiod.first_s[0],
      ping.p50 * 1e6);
  return nlohmann::json{{"bar_size", size},
                        {"raw_fresh", Pair(fresh, size)},
                        {"raw_warm", Pair(warm, size)},
                        {"raw_fresh_spread",
                         {{"before_map_mean_s", Mean(before.fresh.map_s)},
                          {"after_map_mean_s", Mean(after.fresh.map_s)}}},
                        {"vfiod", Pair(vfiod.calls, size)},
                        {"vfiod_server_map_mean_s", vfiod.server_map_s},
                        {"vfiod_server_free_mean_s", vfiod.server_free_s},
                        {"vfiod_server", Pair(vfiod.server_calls, size)},
                        {"vfiod_server_map_stages_s", StagesJson(vfiod.server_map_stages)},
                        {"vfiod_server_free_stages_s", StagesJson(vfiod.server_free_stages)},
                        {"vfiod_device_open_s", vfiod.open_s},
                        {"vfiod_first_map_free_s", vfiod.first_s},
                        {"vfiod_iova", vfiod.iova},
                        {"vfiod_aligned", vfiod.aligned},
                        {"ping_s", ToJson(ping)},
                        {"map_ratio_raw_over_vfiod", map_ratio},
                        {"unmap_ratio_raw_over_vfiod", unmap_ratio},
                        {"map_ratio_raw_warm_over_vfiod", warm_map_ratio},
                        {"unmap_ratio_raw_warm_over_vfiod", warm_unmap_ratio}};
}

}  // namespace

nlohmann::json RunBarVfiod(const GuestOptions& options) {
  (void)std::fprintf(
      stderr,
      "\n== 5b. dma.map_bar through vfiod vs raw: ivshmem BAR%u (%d loops a column; raw, "
      "vfiod, raw again)\n",
      kIvshmemBar, options.loops);
  auto out = Measure(options);
  if (!out) {
    (void)std::fprintf(stderr, "  %s\n", out.error().message().c_str());
    return {{"error", out.error().message()}};
  }
  (*out)["loops"] = options.loops;
  return *out;
}

}  // namespace vfiod::bench
