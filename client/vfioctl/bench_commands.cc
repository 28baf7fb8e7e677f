#include <sys/mman.h>

#include <algorithm>
#include <cmath>
#include <iostream>
#include <numeric>

#include "proto/backing.h"
#include "vfioctl/bench.h"
#include "vfioctl/bench_load.h"

namespace vfiod::vfioctl {
namespace {

struct BenchOptions {
  int count = 10000;
  std::vector<int> clients = {1, 4, 16, 64};
  double seconds = 2;
  std::string device;
  uint64_t size = uint64_t{256} << 20;
  std::string memory{wire::BackingName(wire::Backing::kHugetlb2M)};
  int loops = 5;
  bool adopt_each = false;  ///< map: pass the fd with every map instead of a region
};

std::unexpected<Failure> Failed(const Error& e) {
  const bool unreachable =
      e.code == ENOENT || e.code == ECONNREFUSED || e.code == EACCES || e.code == ENAMETOOLONG;
  return std::unexpected(Failure{unreachable        ? Exit::kUnreachable
                                 : e.code == EINVAL ? Exit::kUsage
                                                    : Exit::kRpcError,
                                 e.message()});
}

// Nearest-rank percentile of sorted samples.
double Percentile(const std::vector<double>& sorted, double pct) {
  auto rank = static_cast<size_t>(std::ceil(pct / 100.0 * static_cast<double>(sorted.size())));
  return sorted[std::clamp<size_t>(rank, 1, sorted.size()) - 1];
}

nlohmann::json LatencyJson(std::vector<double> s) {
  std::sort(s.begin(), s.end());
  const double mean = std::accumulate(s.begin(), s.end(), 0.0) / static_cast<double>(s.size());
  return {{"count", s.size()},
          {"p50_us", Percentile(s, 50) * 1e6},
          {"p99_us", Percentile(s, 99) * 1e6},
          {"mean_us", mean * 1e6},
          {"max_us", s.back() * 1e6}};
}

CmdResult Ping(Session& session, const BenchOptions& o) {
  if (o.count < 1) {
    return UsageError("--count must be at least 1");
  }
  auto samples = CallLatencies(session.options().socket, "ping", o.count);
  if (!samples) {
    return Failed(samples.error());
  }
  const nlohmann::json r = LatencyJson(std::move(*samples));
  session.Emit(r, [&](std::ostream& out) {
    out << "ping x" << r["count"] << ": p50 " << r["p50_us"].get<double>() << " us, p99 "
        << r["p99_us"].get<double>() << " us, mean " << r["mean_us"].get<double>() << " us\n";
  });
  return {};
}

CmdResult RunRate(Session& session, const BenchOptions& o) {
  nlohmann::json rows = nlohmann::json::array();
  for (int n : o.clients) {
    auto rate = MeasureRate(session.options().socket, "ping", n, o.seconds);
    if (!rate) {
      return Failed(rate.error());
    }
    rows.push_back({{"clients", n},
                    {"requests", rate->requests},
                    {"errors", rate->errors},
                    {"seconds", rate->seconds},
                    {"per_second", rate->per_second()}});
  }
  session.Emit(rows, [&](std::ostream& out) {
    for (const auto& r : rows) {
      out << r["clients"] << " clients: " << static_cast<uint64_t>(r["per_second"].get<double>())
          << " req/s (" << r["errors"] << " errors)\n";
    }
  });
  return {};
}

// Idle pings after each map/free pair: the round trip of a request that does
// no work, measured at the same moments as the maps.
constexpr int kPingsPerPair = 5;

// `loops` times: one map/free pair (of the registered `region`, or of `fd`
// passed with the map when region is 0), then kPingsPerPair timed pings.
Result<MapTimings> TimePairs(client::Client& client, uint64_t container, int fd, uint64_t region,
                             uint64_t size, int loops, std::vector<double>& pings) {
  MapTimings all;
  for (int i = 0; i < loops; ++i) {
    const MapTimings one = VFIOD_TRY(region != 0 ? TimeMapRegion(client, container, region, size, 1)
                                                 : TimeMapFd(client, container, fd, size, 1));
    all.map_s.push_back(one.map_s.front());
    all.unmap_s.push_back(one.unmap_s.front());
    all.ioctls = one.ioctls;
    all.chunks = one.chunks;
    all.iova = one.iova;
    for (int p = 0; p < kPingsPerPair; ++p) {
      pings.push_back(VFIOD_TRY(TimePing(client)));
    }
  }
  return all;
}

// Registers `fd` once (untimed, as a program touches its memory before
// timing) unless `adopt_each`, times the pairs, then unregisters it.
Result<MapTimings> TimeMaps(client::Client& client, uint64_t container, int fd, uint64_t size,
                            int loops, bool adopt_each, std::vector<double>& pings) {
  if (adopt_each) {
    return TimePairs(client, container, fd, 0, size, loops, pings);
  }
  const uint64_t region = VFIOD_TRY(RegisterRegion(client, fd, size));
  auto timings = TimePairs(client, container, fd, region, size, loops, pings);
  auto dropped = UnregisterRegion(client, region);
  if (timings && !dropped) {
    return std::unexpected(dropped.error());
  }
  return timings;
}

CmdResult Map(Session& session, const BenchOptions& o) {
  const wire::Backing kind = wire::ParseBacking(o.memory).value_or(wire::Backing::k4K);
  const bool hugetlb = kind == wire::Backing::kHugetlb2M || kind == wire::Backing::kHugetlb1G;
  void* view = nullptr;
  auto fd = MakeMemfd(o.size, hugetlb ? wire::BackingPageSize(kind) : 0,
                      kind == wire::Backing::kThp, &view);
  if (!fd) {
    return Failed(fd.error());
  }
  // A connection of its own: the container and mappings end with it.
  auto client = client::Client::Connect(session.options().socket);
  if (!client) {
    ::munmap(view, o.size);
    return Failed(client.error());
  }
  auto made = client->Call("container.create", {{"devices", {o.device}}});
  if (!made) {
    ::munmap(view, o.size);
    return std::unexpected(FailureFor("container.create", made.error()));
  }
  const uint64_t container = made->result.at("container");
  std::vector<double> pings;
  auto t = TimeMaps(*client, container, fd->get(), o.size, o.loops, o.adopt_each, pings);
  ::munmap(view, o.size);
  if (!t) {
    return Failed(t.error());
  }
  const auto mean = [](const std::vector<double>& v) {
    return std::accumulate(v.begin(), v.end(), 0.0) / static_cast<double>(v.size());
  };
  const auto median = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return Percentile(v, 50);
  };
  const auto least = [](const std::vector<double>& v) { return *std::ranges::min_element(v); };
  const double gb = static_cast<double>(o.size) / 1e9;
  const nlohmann::json r = {{"memory", o.memory},
                            {"mode", o.adopt_each ? "fd" : "region"},
                            {"size", o.size},
                            {"loops", o.loops},
                            {"map_s", mean(t->map_s)},
                            {"unmap_s", mean(t->unmap_s)},
                            {"map_gbps", gb / mean(t->map_s)},
                            {"unmap_gbps", gb / mean(t->unmap_s)},
                            {"map_median_s", median(t->map_s)},
                            {"unmap_median_s", median(t->unmap_s)},
                            {"map_min_s", least(t->map_s)},
                            {"unmap_min_s", least(t->unmap_s)},
                            {"map_samples_s", t->map_s},
                            {"unmap_samples_s", t->unmap_s},
                            {"ioctls", t->ioctls},
                            {"iova", t->iova},
                            {"round_trip_median_s", median(pings)},
                            {"round_trip_mean_s", mean(pings)}};
  session.Emit(r, [&](std::ostream& out) {
    out << "VFIO MAP DMA in " << r["map_s"].get<double>() << " s (" << r["map_gbps"].get<double>()
        << " GB/s), median " << r["map_median_s"].get<double>() << " s, min "
        << r["map_min_s"].get<double>() << " s\nVFIO UNMAP DMA in " << r["unmap_s"].get<double>()
        << " s (" << r["unmap_gbps"].get<double>() << " GB/s), median "
        << r["unmap_median_s"].get<double>() << " s, min " << r["unmap_min_s"].get<double>()
        << " s\n(through vfiod, request to reply, average of " << o.loops
        << (o.adopt_each ? "; the fd passed and adopted by every map)\n"
                         : "; the memfd registered once, untimed)\n")
        << "idle round trip between the pairs: median " << r["round_trip_median_s"].get<double>()
        << " s, mean " << r["round_trip_mean_s"].get<double>()
        << " s (a request-to-reply map costs at least the raw map plus this)\n";
  });
  return {};
}

}  // namespace

void AddBenchCommands(CLI::App& app, Dispatch& dispatch) {
  auto o = std::make_shared<BenchOptions>();
  CLI::App* bench = app.add_subcommand("bench", "measure vfiod from this client");
  bench->require_subcommand(1);

  CLI::App* ping = bench->add_subcommand("ping", "round-trip latency of ping (p50/p99)");
  ping->add_option("--count,-n", o->count, "calls")->capture_default_str();
  OnParsed(ping, dispatch, [o](Session& s) { return Ping(s, *o); });

  CLI::App* rate = bench->add_subcommand("rate", "ping requests/s with N concurrent connections");
  rate->add_option("--clients,-c", o->clients, "connections (repeatable)")->capture_default_str();
  rate->add_option("--seconds", o->seconds, "seconds per run")->capture_default_str();
  OnParsed(rate, dispatch, [o](Session& s) { return RunRate(s, *o); });

  CLI::App* map =
      bench->add_subcommand("map", "dma.map_fd/dma.free of a registered memfd, request to reply");
  map->add_option("--device,-d", o->device, "a device for the container")->required();
  map->add_option("--size", o->size, "bytes")->transform(SizeArg())->capture_default_str();
  map->add_option("--memory", o->memory, "memfd kind")
      ->check(CLI::IsMember(wire::AllocBackingNames()))
      ->capture_default_str();
  map->add_option("--loops", o->loops, "map/unmap pairs")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  map->add_flag("--adopt-each", o->adopt_each,
                "pass the fd with every dma.map_fd (adopted each time) instead of registering "
                "it once and mapping the region");
  OnParsed(map, dispatch, [o](Session& s) { return Map(s, *o); });
}

}  // namespace vfiod::vfioctl
