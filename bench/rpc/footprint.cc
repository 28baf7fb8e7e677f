#include "rpc/footprint.h"

#include <chrono>
#include <cstdio>
#include <thread>

#include "client/vfiod_client.h"
#include "common/stats.h"
#include "proto/fd_passing.h"
#include "rpc/model_daemon.h"

namespace vfiod::bench {
namespace {

// A reply carries at most this many fds (one memfd per dma.alloc).
constexpr uint64_t kBatch = wire::kMaxFdsPerMessage;

nlohmann::json Snapshot(pid_t pid) {
  auto status = ProcStatusBytes(pid);
  return {{"vm_rss", status["VmRSS"]},     {"rss_anon", status["RssAnon"]},
          {"rss_file", status["RssFile"]}, {"rss_shmem", status["RssShmem"]},
          {"fds", CountFds(pid)},          {"vmas", CountMaps(pid)}};
}

// How many fd- and VMA-holding mappings the daemon can take, and why.
std::pair<uint64_t, std::string> Cap(pid_t pid, uint64_t wanted) {
  const uint64_t nofile = OpenFilesLimit(pid);
  const uint64_t max_maps = ReadNumber("/proc/sys/vm/max_map_count");
  const uint64_t fds = CountFds(pid);
  const uint64_t vmas = CountMaps(pid);
  uint64_t cap = wanted;
  std::string why = "requested";
  if (nofile != 0 && nofile < fds + 256 + cap) {
    cap = nofile - fds - 256;
    why = Format("RLIMIT_NOFILE %llu (one memfd per mapping)",
                 static_cast<unsigned long long>(nofile));
  }
  if (max_maps != 0 && max_maps < vmas + 1024 + cap) {
    cap = max_maps - vmas - 1024;
    why = Format("vm.max_map_count %llu (one VMA per mapping)",
                 static_cast<unsigned long long>(max_maps));
  }
  return {cap, why};
}

// Adds `count` mappings; returns how many succeeded and the first error.
// `per_4096` gets the seconds each successive 4096 mappings took (does the
// cost of a map grow with the number of mappings?).
std::pair<uint64_t, std::string> AddMappings(client::Client& c, uint64_t container, uint64_t count,
                                             std::vector<double>& per_4096) {
  uint64_t made = 0;
  Clock::time_point mark = Clock::now();
  while (made < count) {
    if (made != 0 && made % 4096 == 0) {
      per_4096.push_back(SecondsSince(mark));
      mark = Clock::now();
    }
    std::vector<client::BatchCall> calls;
    for (uint64_t i = 0; i < std::min(kBatch, count - made); ++i) {
      calls.push_back({"dma.alloc", {{"container", container}, {"size", 4096}, {"backing", "4k"}}});
    }
    auto results = c.Batch(calls, {}, client::kNoTimeout);
    if (!results) {
      return {made, results.error().Describe()};
    }
    for (auto& r : *results) {  // the memfds in the replies close here
      if (!r) {
        return {made, r.error().Describe()};
      }
      ++made;
    }
  }
  return {made, ""};
}

}  // namespace

nlohmann::json MeasureFootprint(const DaemonProcess& daemon, uint64_t mappings) {
  const pid_t pid = daemon.pid();
  nlohmann::json out = {{"idle", Snapshot(pid)}};
  auto c = client::Client::Connect(daemon.socket());
  if (!c) {
    return {{"error", c.error().message()}};
  }
  auto made = c->Call("container.create", {{"devices", {kModelEdu}}});
  if (!made) {
    return {{"error", made.error().Describe()}};
  }
  const uint64_t container = made->result.at("container");
  out["with_container"] = Snapshot(pid);
  const auto [cap, why] = Cap(pid, mappings);
  out["requested"] = mappings;
  out["capped_by"] = why;
  const Clock::time_point start = Clock::now();
  std::vector<double> per_4096;
  const auto [count, error] = AddMappings(*c, container, cap, per_4096);
  out["seconds_to_map"] = SecondsSince(start);
  out["seconds_per_4096_mappings"] = per_4096;
  out["mappings"] = count;
  if (!error.empty()) {
    out["error"] = error;
  }
  out["mapped"] = Snapshot(pid);
  const auto delta = [&](const char* field) {
    return (static_cast<double>(out["mapped"][field].get<uint64_t>()) -
            static_cast<double>(out["with_container"][field].get<uint64_t>())) /
           static_cast<double>(std::max<uint64_t>(count, 1));
  };
  out["bytes_per_mapping"] = {{"rss_anon", delta("rss_anon")},
                              {"vm_rss", delta("vm_rss")},
                              {"rss_shmem", delta("rss_shmem")}};
  c = Fail(ECONNRESET, "closed");  // the session ends: vfiod frees its mappings
  for (int i = 0; i < 200 && Snapshot(pid)["fds"].get<uint64_t>() >
                                 out["with_container"]["fds"].get<uint64_t>();
       ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  out["after_close"] = Snapshot(pid);
  return out;
}

}  // namespace vfiod::bench
