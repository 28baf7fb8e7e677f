// vfiod_bench_rpc: benchmark 6 of BENCHMARKS.md, on the host with vfiod on the
// model kernel: ping round trips against a raw unix-socket ping-pong between
// two processes (the limit), request rates with 1-64 concurrent clients, and
// the daemon's memory idle and with many mappings.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <filesystem>
#include <iostream>

#include "common/daemon_process.h"
#include "common/stats.h"
#include "rpc/footprint.h"
#include "rpc/model_daemon.h"
#include "rpc/raw_pingpong.h"
#include "vfioctl/bench_load.h"

namespace vfiod::bench {
namespace {

struct Options {
  std::string vfiod;
  std::string json_path;
  int pings = 20000;
  double seconds = 2;
  uint64_t mappings = 65535;
  int workers = 2;
};

void PrintLatency(const char* label, const Summary& s) {
  std::fprintf(stderr, "  %-26s p50 %8.1f us   p99 %8.1f us   mean %8.1f us   (%zu calls)\n", label,
               s.p50 * 1e6, s.p99 * 1e6, s.mean * 1e6, s.count);
}

nlohmann::json Latency(const DaemonProcess& daemon, int pings) {
  std::fprintf(stderr, "\n== 6a. Round trip of a small request (%d calls)\n", pings);
  auto raw = RawPingPong(pings);
  auto via = vfioctl::CallLatencies(daemon.socket(), "ping", pings);
  if (!raw || !via) {
    const std::string e = (!raw ? raw.error() : via.error()).message();
    std::fprintf(stderr, "  %s\n", e.c_str());
    return {{"error", e}};
  }
  const Summary r = Summarize(*raw);
  const Summary v = Summarize(*via);
  PrintLatency("raw unix ping-pong", r);
  PrintLatency("vfiod ping", v);
  std::fprintf(stderr, "  vfiod / raw: p50 %.2fx  p99 %.2fx  (target: within 2x)\n",
               Ratio(v.p50, r.p50), Ratio(v.p99, r.p99));
  return {{"raw_s", ToJson(r)},
          {"vfiod_s", ToJson(v)},
          {"ratio_p50", Ratio(v.p50, r.p50)},
          {"ratio_p99", Ratio(v.p99, r.p99)}};
}

nlohmann::json Rates(const DaemonProcess& daemon, double seconds) {
  std::fprintf(stderr, "\n== 6b. ping requests/s, each client its own connection (%.0f s each)\n",
               seconds);
  nlohmann::json rows = nlohmann::json::array();
  for (int clients : {1, 4, 16, 64}) {
    auto rate = vfioctl::MeasureRate(daemon.socket(), "ping", clients, seconds);
    if (!rate) {
      std::fprintf(stderr, "  %2d clients: %s\n", clients, rate.error().message().c_str());
      rows.push_back({{"clients", clients}, {"error", rate.error().message()}});
      continue;
    }
    std::fprintf(stderr, "  %2d clients: %10.0f req/s  (%llu requests, %llu errors)\n", clients,
                 rate->per_second(), static_cast<unsigned long long>(rate->requests),
                 static_cast<unsigned long long>(rate->errors));
    rows.push_back({{"clients", clients},
                    {"requests", rate->requests},
                    {"errors", rate->errors},
                    {"seconds", rate->seconds},
                    {"per_second", rate->per_second()}});
  }
  return rows;
}

void PrintFootprint(const nlohmann::json& f) {
  std::fprintf(stderr, "\n== 6c. Daemon memory\n");
  if (!f.contains("mapped")) {
    std::fprintf(stderr, "  %s\n", f.value("error", std::string("?")).c_str());
    return;
  }
  const auto mib = [](const nlohmann::json& snap, const char* k) {
    return static_cast<double>(snap[k].get<uint64_t>()) / (1 << 20);
  };
  std::fprintf(stderr, "  idle: VmRSS %.1f MiB (anon %.1f MiB)\n", mib(f["idle"], "vm_rss"),
               mib(f["idle"], "rss_anon"));
  std::fprintf(stderr,
               "  %llu mappings (of %llu requested; cap: %s): VmRSS %.1f MiB (anon %.1f MiB, "
               "shmem %.1f MiB), %llu fds, %llu VMAs\n",
               static_cast<unsigned long long>(f["mappings"].get<uint64_t>()),
               static_cast<unsigned long long>(f["requested"].get<uint64_t>()),
               f["capped_by"].get<std::string>().c_str(), mib(f["mapped"], "vm_rss"),
               mib(f["mapped"], "rss_anon"), mib(f["mapped"], "rss_shmem"),
               static_cast<unsigned long long>(f["mapped"]["fds"].get<uint64_t>()),
               static_cast<unsigned long long>(f["mapped"]["vmas"].get<uint64_t>()));
  std::fprintf(stderr,
               "  per mapping: %.0f B of daemon heap (RssAnon), %.0f B of VmRSS including the "
               "mapped 4 KiB page (target < 256 B of bookkeeping)\n",
               f["bytes_per_mapping"]["rss_anon"].get<double>(),
               f["bytes_per_mapping"]["vm_rss"].get<double>());
  std::fprintf(stderr, "  after the client closed: VmRSS %.1f MiB (anon %.1f MiB), %llu fds\n",
               mib(f["after_close"], "vm_rss"), mib(f["after_close"], "rss_anon"),
               static_cast<unsigned long long>(f["after_close"]["fds"].get<uint64_t>()));
  if (f.contains("error")) {
    std::fprintf(stderr, "  stopped early: %s\n", f["error"].get<std::string>().c_str());
  }
}

int Main(int argc, char** argv) {
  Options o;
  CLI::App app{"vfiod RPC benchmark (host, model kernel)"};
  app.add_option("--vfiod", o.vfiod, "the vfiod binary")->required();
  app.add_option("--json", o.json_path, "write the JSON here (else stdout)");
  app.add_option("--pings", o.pings, "round trips timed")->capture_default_str();
  app.add_option("--seconds", o.seconds, "seconds per request-rate run")->capture_default_str();
  app.add_option("--mappings", o.mappings, "mappings for the memory figure")->capture_default_str();
  app.add_option("--workers", o.workers, "vfiod worker threads")->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  auto daemon = StartModelDaemon(o.vfiod, o.workers);
  if (!daemon) {
    std::fprintf(stderr, "%s\n", daemon.error().message().c_str());
    return 1;
  }
  nlohmann::json doc = {{"machine", MachineFacts()}, {"vfiod_workers", o.workers}};
  doc["latency"] = Latency(*daemon, o.pings);
  doc["rates"] = Rates(*daemon, o.seconds);
  doc["memory"] = MeasureFootprint(*daemon, o.mappings);
  PrintFootprint(doc["memory"]);
  doc["vfiod_exit"] = daemon->Stop();
  std::error_code ec;
  std::filesystem::remove_all(std::filesystem::path(daemon->socket()).parent_path(), ec);
  if (o.json_path.empty()) {
    std::cout << doc.dump() << std::endl;
  } else if (!WriteJsonFile(o.json_path, doc)) {
    return 1;
  }
  return doc.dump().find("\"error\"") != std::string::npos ? 1 : 0;
}

}  // namespace
}  // namespace vfiod::bench

int main(int argc, char** argv) { return vfiod::bench::Main(argc, argv); }
