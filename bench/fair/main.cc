// vfiod_bench_fair: fair service (issue 12 item 2). Another user's latency
// (uid 65534: ping, a 4 KiB dma.alloc, its dma.free) while idle and while root
// floods long maps on several connections. On the host the daemon runs on the
// model kernel, its maps made slow with model.map_dma_us_per_mib; in the test
// VM (VFIOD_IN_VM) on the real kernel, flooding real memory. The table goes
// to stderr, the figures as one JSON document to stdout (or --json FILE).
#include <sys/stat.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>

#include "common/daemon_process.h"
#include "common/stats.h"
#include "fair/load.h"
#include "rpc/model_daemon.h"

namespace vfiod::bench {
namespace {

using nlohmann::json;

constexpr uid_t kOtherUid = 65534;

struct Options {
  std::string vfiod;
  int rounds = 100;
  int workers = 2;          // the shipped default (limits.worker_threads)
  uint32_t us_per_mib = 0;  // model only; 0: not set (an older vfiod has no such key)
  FloodPlan flood;
  std::string json_path;
};

std::string EnvOr(const char* name, const char* fallback) {
  const char* v = std::getenv(name);
  return v != nullptr ? v : fallback;
}

json Policy(const std::string& device) {
  return {
      {"rules",
       json::array({{{"users", json::array({kOtherUid})},
                     {"devices", json::array({device})},
                     {"quota", {{"locked_bytes", "16M"}, {"mappings", 4}, {"containers", 1}}}}})}};
}

/// vfiod for the run, the other user's device in `other_device`.
Result<DaemonProcess> StartDaemon(Options& o, std::string& other_device) {
  if (std::getenv("VFIOD_IN_VM") != nullptr) {
    other_device = EnvOr("VFIOD_EDU_BDF", "0000:00:01.0");
    o.flood.device = EnvOr("VFIOD_NVME_BDF", "0000:00:03.0");
    char tmpl[] = "/tmp/vfiod-bench-fair-XXXXXX";
    if (::mkdtemp(tmpl) == nullptr) {
      return ErrnoError("mkdtemp");
    }
    const json config = {{"socket", {{"group", nullptr}, {"mode", "0666"}}},
                         {"kernel", "linux"},
                         {"sysfs_root", "/sys"},
                         {"limits", {{"map_chunk_bytes", "1G"}, {"worker_threads", o.workers}}},
                         {"logging", {{"level", "warn"}, {"target", "stderr"}}},
                         {"policy", Policy(other_device)}};
    return DaemonProcess::Start(o.vfiod, tmpl, config);
  }
  other_device = kModelEdu;
  o.flood.device = kModelSecond;
  json patch = {{"socket", {{"mode", "0666"}}}, {"policy", Policy(other_device)}};
  if (o.us_per_mib > 0) {
    patch["model"]["map_dma_us_per_mib"] = o.us_per_mib;
  }
  return StartModelDaemon(o.vfiod, o.workers, patch);
}

json Summaries(const json& samples) {
  json out = json::object();
  for (const char* call : {"ping", "alloc", "free"}) {
    out[call] = ToJson(Summarize(samples.at(call).get<std::vector<double>>()));
  }
  return out;
}

void PrintRow(const char* phase, const json& s) {
  (void)std::fprintf(stderr, "%-8s", phase);
  for (const char* call : {"ping", "alloc", "free"}) {
    (void)std::fprintf(stderr, " | %-5s %9.0f %9.0f %9.0f", call, s[call]["p50"].get<double>(),
                       s[call]["p99"].get<double>(), s[call]["max"].get<double>());
  }
  (void)std::fprintf(stderr, "\n");
}

int Run(Options& o) {
  std::string other_device;
  auto daemon = StartDaemon(o, other_device);
  if (!daemon) {
    (void)std::fprintf(stderr, "vfiod: %s\n", daemon.error().message().c_str());
    return 1;
  }
  // The other user must reach the socket in the daemon's 0700 folder.
  ::chmod(std::filesystem::path(daemon->socket()).parent_path().c_str(), 0755);
  o.flood.socket = daemon->socket();
  OtherUser other(daemon->socket(), other_device, kOtherUid);  // forked before any thread
  json idle = other.Run(o.rounds);
  Flood flood(o.flood);
  std::string started = idle.contains("error") ? "" : flood.Start();
  json flooded = started.empty() && !idle.contains("error") ? other.Run(o.rounds) : json();
  json flood_figures = flood.Stop();
  for (const json* r : {&idle, &flooded}) {
    if (r->contains("error")) {
      (void)std::fprintf(stderr, "the other user: %s\n", (*r)["error"].dump().c_str());
      return 1;
    }
  }
  if (!started.empty()) {
    (void)std::fprintf(stderr, "flood: %s\n", started.c_str());
    return 1;
  }
  json doc = {{"machine", MachineFacts()},
              {"in_vm", std::getenv("VFIOD_IN_VM") != nullptr},
              {"workers", o.workers},
              {"model_map_dma_us_per_mib", o.us_per_mib},
              {"rounds", o.rounds},
              {"flood_plan",
               {{"connections", o.flood.connections},
                {"inflight", o.flood.inflight},
                {"size", o.flood.size},
                {"backing", o.flood.backing}}},
              {"flood", flood_figures},
              {"other_user_us", {{"idle", Summaries(idle)}, {"flooded", Summaries(flooded)}}}};
  (void)std::fprintf(stderr, "other user (uid %u), microseconds: p50 p99 max\n", kOtherUid);
  PrintRow("idle", doc["other_user_us"]["idle"]);
  PrintRow("flooded", doc["other_user_us"]["flooded"]);
  (void)std::fprintf(stderr, "flood: %d connections x %d in flight x %s (%s): %s\n",
                     o.flood.connections, o.flood.inflight, SizeName(o.flood.size).c_str(),
                     o.flood.backing.c_str(), flood_figures.dump().c_str());
  if (o.json_path.empty()) {
    std::cout << doc.dump() << "\n";
    return 0;
  }
  return WriteJsonFile(o.json_path, doc) ? 0 : 1;
}

int Main(int argc, char** argv) {
  Options o;
  CLI::App app{"vfiod fair service benchmark: another user's latency under a flood of maps"};
  app.add_option("--vfiod", o.vfiod, "the vfiod binary")->required();
  app.add_option("--rounds", o.rounds, "the other user's rounds per phase")->capture_default_str();
  app.add_option("--workers", o.workers, "limits.worker_threads")->capture_default_str();
  app.add_option("--us-per-mib", o.us_per_mib, "model.map_dma_us_per_mib (model only; 0: unset)")
      ->capture_default_str();
  app.add_option("--connections", o.flood.connections, "flood connections")->capture_default_str();
  app.add_option("--inflight", o.flood.inflight, "maps in flight per flood connection")
      ->capture_default_str();
  app.add_option("--size", o.flood.size, "bytes of each flood map")->capture_default_str();
  app.add_option("--backing", o.flood.backing, "backing of the flood maps")->capture_default_str();
  app.add_option("--json", o.json_path, "write the JSON here instead of stdout");
  CLI11_PARSE(app, argc, argv);
  return Run(o);
}

}  // namespace
}  // namespace vfiod::bench

int main(int argc, char** argv) {
  return vfiod::bench::GuardedMain("vfiod_bench_fair", vfiod::bench::Main, argc, argv);
}
