#include "guest/map_rounds.h"

#include <algorithm>

#include "common/stats.h"
#include "guest/sections.h"

namespace vfiod::bench {
namespace {

// The calls and total microseconds `stats` reports for each method.
struct MethodTotals {
  nlohmann::json by_method;
  [[nodiscard]] uint64_t Calls(const char* method) const {
    return by_method.contains(method) ? by_method[method].value("calls", uint64_t{0}) : 0;
  }
  [[nodiscard]] double Seconds(const char* method) const {
    return by_method.contains(method) ? by_method[method].value("total_us", 0.0) / 1e6 : 0;
  }
  /// Seconds per stage (stages_us), by stage name; empty from an older daemon.
  [[nodiscard]] std::map<std::string, double> Stages(const char* method) const {
    std::map<std::string, double> out;
    if (by_method.contains(method) && by_method[method].contains("stages_us")) {
      for (const auto& [stage, us] : by_method[method]["stages_us"].items()) {
        out[stage] = us.get<double>() / 1e6;
      }
    }
    return out;
  }
};

Result<MethodTotals> ReadTotals(client::Client& client) {
  auto stats = client.Call("stats");
  if (!stats) {
    return Fail(EIO, "stats", stats.error().Describe());
  }
  return MethodTotals{stats->result.value("by_method", nlohmann::json::object())};
}

// The server time of the one `method` call made between `before` and `after`.
Result<double> OneCall(const MethodTotals& before, const MethodTotals& after, const char* method) {
  if (after.Calls(method) != before.Calls(method) + 1) {
    return Fail(EIO, "stats", std::string("expected one more call of ") + method);
  }
  return after.Seconds(method) - before.Seconds(method);
}

// Appends the growth of each of `method`'s stages from `before` to `after`.
void AddStages(const MethodTotals& before, const MethodTotals& after, const char* method,
               std::map<std::string, std::vector<double>>& to) {
  std::map<std::string, double> was = before.Stages(method);
  for (const auto& [stage, seconds] : after.Stages(method)) {
    to[stage].push_back(seconds - was[stage]);
  }
}

nlohmann::json StagesJson(const std::map<std::string, std::vector<double>>& stages) {
  nlohmann::json out = nlohmann::json::object();
  for (const auto& [stage, samples] : stages) {
    out[stage] = {{"mean_s", Mean(samples)}, {"median_s", Summarize(samples).p50}};
  }
  return out;
}

// Client time minus server time, call by call.
std::vector<double> Gaps(const std::vector<double>& client, const std::vector<double>& server) {
  std::vector<double> gaps;
  for (size_t i = 0; i < std::min(client.size(), server.size()); ++i) {
    gaps.push_back(client[i] - server[i]);
  }
  return gaps;
}

double Median(std::vector<double> samples) { return Summarize(std::move(samples)).p50; }

double Min(const std::vector<double>& samples) {
  return samples.empty() ? 0 : *std::min_element(samples.begin(), samples.end());
}

}  // namespace

PairFn RawPair(const GuestRig& rig, uint64_t vaddr, uint64_t iova, uint64_t size) {
  return [&rig, vaddr, iova, size](ColumnSamples& out) -> Result<void> {
    Result<void> mapped = Ok();
    const double map_s = TimeSeconds([&] { mapped = rig.Map(vaddr, iova, size); });
    VFIOD_TRY(mapped);
    Result<void> unmapped = Ok();
    const double unmap_s = TimeSeconds([&] { unmapped = rig.Unmap(iova, size); });
    VFIOD_TRY(unmapped);
    out.map_s.push_back(map_s);
    out.unmap_s.push_back(unmap_s);
    return Ok();
  };
}

PairFn VfiodPair(client::Client& client, std::function<Result<vfioctl::MapTimings>()> pair) {
  return [&client, pair = std::move(pair)](ColumnSamples& out) -> Result<void> {
    const MethodTotals before = VFIOD_TRY(ReadTotals(client));
    const vfioctl::MapTimings t = VFIOD_TRY(pair());
    const MethodTotals after = VFIOD_TRY(ReadTotals(client));
    if (t.map_s.size() != 1 || t.unmap_s.size() != 1) {
      return Fail(EIO, "vfiod pair", "expected one map and one free");
    }
    out.server_map_s.push_back(VFIOD_TRY(OneCall(before, after, "dma.map_fd")));
    out.server_unmap_s.push_back(VFIOD_TRY(OneCall(before, after, "dma.free")));
    AddStages(before, after, "dma.map_fd", out.server_map_stages_s);
    AddStages(before, after, "dma.free", out.server_unmap_stages_s);
    out.map_s.push_back(t.map_s.front());
    out.unmap_s.push_back(t.unmap_s.front());
    out.ioctls = t.ioctls;
    out.chunks = t.chunks;
    out.iova = t.iova;
    return Ok();
  };
}

Result<std::vector<double>> RunRounds(std::vector<Column>& columns, int rounds,
                                      const std::function<Result<double>()>& ping, int pings) {
  for (Column& column : columns) {
    VFIOD_TRY(column.pair(column.warmup));
  }
  std::vector<double> round_trips;
  const size_t n = columns.size();
  for (int r = 0; r < rounds; ++r) {
    for (size_t k = 0; k < n; ++k) {
      Column& column = columns[(static_cast<size_t>(r) + k) % n];
      VFIOD_TRY(column.pair(column.samples));
    }
    for (int p = 0; p < pings; ++p) {
      round_trips.push_back(VFIOD_TRY(ping()));
    }
  }
  return round_trips;
}

// The analyzer loses the std::functions moved into the vector's Columns and
// reports them leaked at the return.
// NOLINTBEGIN(clang-analyzer-cplusplus.NewDeleteLeaks)
Result<std::vector<Loops>> InterleavedRawLoops(const GuestRig& rig,
                                               const std::vector<RawTarget>& targets, uint64_t size,
                                               int loops) {
  std::vector<Column> columns;
  columns.reserve(targets.size());
  for (const RawTarget& t : targets) {
    columns.push_back({"raw", RawPair(rig, t.vaddr, t.iova, size), {}, {}});
  }
  VFIOD_TRY(RunRounds(columns, loops, /*ping=*/{}, /*pings=*/0));
  std::vector<Loops> out;
  out.reserve(columns.size());
  for (Column& column : columns) {
    out.push_back({std::move(column.samples.map_s), std::move(column.samples.unmap_s)});
  }
  return out;
}
// NOLINTEND(clang-analyzer-cplusplus.NewDeleteLeaks)

nlohmann::json OpJson(const std::vector<double>& samples, uint64_t bytes) {
  return {{"mean_s", Mean(samples)},
          {"median_s", Median(samples)},
          {"min_s", Min(samples)},
          {"gbps", GBps(bytes, Mean(samples))},
          {"samples", samples}};
}

nlohmann::json ColumnJson(const Column& column, uint64_t bytes) {
  const ColumnSamples& s = column.samples;
  nlohmann::json out = {{"map", OpJson(s.map_s, bytes)}, {"unmap", OpJson(s.unmap_s, bytes)}};
  if (!column.warmup.map_s.empty()) {
    out["warmup_s"] = {column.warmup.map_s.front(), column.warmup.unmap_s.front()};
  }
  if (!s.server_map_s.empty()) {
    out["server"] = {{"map", OpJson(s.server_map_s, bytes)},
                     {"unmap", OpJson(s.server_unmap_s, bytes)}};
    out["server_stages"] = {{"map", StagesJson(s.server_map_stages_s)},
                            {"unmap", StagesJson(s.server_unmap_stages_s)}};
    out["gap"] = {{"map", ToJson(Summarize(Gaps(s.map_s, s.server_map_s)))},
                  {"unmap", ToJson(Summarize(Gaps(s.unmap_s, s.server_unmap_s)))}};
    out["ioctls"] = s.ioctls;
    out["chunks"] = s.chunks;
    out["iova"] = s.iova;
  }
  return out;
}

}  // namespace vfiod::bench
