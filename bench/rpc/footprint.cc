#include "rpc/footprint.h"

#include <sys/mman.h>

#include <chrono>
#include <cstdio>
#include <thread>

#include "client/vfiod_client.h"
#include "common/stats.h"
#include "rpc/model_daemon.h"
#include "vfioctl/bench_load.h"

namespace vfiod::bench {
namespace {

// Calls per JSON-RPC batch: the daemon's default max_inflight_per_client
// (every call of a batch counts as in flight).
constexpr uint64_t kBatch = 32;
// The size of each mapping: one 4 KiB page of the registered region.
constexpr uint64_t kSlice = 4096;

nlohmann::json Snapshot(pid_t pid) {
  auto status = ProcStatusBytes(pid);
  return {{"vm_rss", status["VmRSS"]},     {"rss_anon", status["RssAnon"]},
          {"rss_file", status["RssFile"]}, {"rss_shmem", status["RssShmem"]},
          {"fds", CountFds(pid)},          {"vmas", CountMaps(pid)}};
}

// Adds `count` mappings of consecutive 4 KiB slices of `region`, in batches
// of kBatch calls; returns how many succeeded and the first error.
// `per_4096` gets the seconds each successive 4096 mappings took (does the
// cost of a map grow with the number of mappings?).
std::pair<uint64_t, std::string> AddSlices(client::Client& c, uint64_t container, uint64_t region,
                                           uint64_t count, std::vector<double>& per_4096) {
  uint64_t made = 0;
  Clock::time_point mark = Clock::now();
  while (made < count) {
    std::vector<client::BatchCall> calls;
    for (uint64_t i = made; i < std::min(made + kBatch, count); ++i) {
      calls.push_back({"dma.map_fd",
                       {{"container", container},
                        {"region", region},
                        {"offset", i * kSlice},
                        {"size", kSlice}}});
    }
    auto results = c.Batch(calls, {}, client::kNoTimeout);
    if (!results) {
      return {made, results.error().Describe()};
    }
    for (auto& r : *results) {
      if (!r) {
        return {made, r.error().Describe()};
      }
      if (++made % 4096 == 0) {
        per_4096.push_back(SecondsSince(mark));
        mark = Clock::now();
      }
    }
  }
  return {made, ""};
}

// A populated shmem memfd of `size` bytes (the client's view is dropped: the
// pages stay in the file).
Result<UniqueFd> PopulatedMemfd(uint64_t size) {
  void* view = nullptr;
  UniqueFd fd = VFIOD_TRY(vfioctl::MakeMemfd(size, 0, false, &view));
  ::munmap(view, size);
  return fd;
}

// After the client closed: waits (up to 30 s) until the session's release
// is visible (the region's view unmapped: RssShmem back to what it was with
// the region registered and nothing mapped; fewer fds than then: the
// connection and the region's memfd closed). Freeing does not shrink RSS,
// and the mappings may still be torn down then, so it then gives the heap
// up to 5 s to come back (RssAnon below halfway between the registered and
// the mapped figure) and 500 ms to hold still. Returns {"released",
// "seconds_to_release", "heap_returned"}.
nlohmann::json WaitForRelease(pid_t pid, const nlohmann::json& with_region,
                              const nlohmann::json& mapped) {
  const auto anon = [&] { return Snapshot(pid)["rss_anon"].get<uint64_t>(); };
  const auto released = [&] {
    const nlohmann::json now = Snapshot(pid);
    return now["rss_shmem"].get<uint64_t>() <=
               with_region["rss_shmem"].get<uint64_t>() + (1 << 20) &&
           now["fds"].get<uint64_t>() < with_region["fds"].get<uint64_t>();
  };
  const auto poll_until = [](double seconds, const auto& done) {
    const Clock::time_point start = Clock::now();
    while (!done()) {
      if (SecondsSince(start) > seconds) {
        return false;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return true;
  };
  const Clock::time_point closed = Clock::now();
  if (!poll_until(30, released)) {
    return {{"released", false}, {"heap_returned", false}};
  }
  const double release_s = SecondsSince(closed);
  const uint64_t halfway =
      (with_region["rss_anon"].get<uint64_t>() + mapped["rss_anon"].get<uint64_t>()) / 2;
  const bool returned = poll_until(5, [&] { return anon() < halfway; });
  uint64_t last = anon();
  (void)poll_until(10, [&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(450));
    const uint64_t now = anon();
    const bool still = now == last;
    last = now;
    return still;
  });
  return {{"released", true}, {"seconds_to_release", release_s}, {"heap_returned", returned}};
}

}  // namespace

nlohmann::json MeasureFootprint(const DaemonProcess& daemon, uint64_t mappings) {
  const pid_t pid = daemon.pid();
  nlohmann::json out = {{"idle", Snapshot(pid)}, {"slice_bytes", kSlice}};
  auto c = client::Client::Connect(daemon.socket());
  if (!c) {
    return {{"error", c.error().message()}};
  }
  auto made = c->Call("container.create", {{"devices", {kModelEdu}}});
  if (!made) {
    return {{"error", made.error().Describe()}};
  }
  const uint64_t container = made->result.at("container");
  auto memfd = PopulatedMemfd(mappings * kSlice);
  if (!memfd) {
    return {{"error", memfd.error().message()}};
  }
  auto region = vfioctl::RegisterRegion(*c, memfd->get(), mappings * kSlice);
  if (!region) {
    return {{"error", region.error().message()}};
  }
  out["with_region"] = Snapshot(pid);
  out["requested"] = mappings;
  const Clock::time_point start = Clock::now();
  std::vector<double> per_4096;
  const auto [count, error] = AddSlices(*c, container, *region, mappings, per_4096);
  out["seconds_to_map"] = SecondsSince(start);
  out["seconds_per_4096_mappings"] = per_4096;
  out["mappings"] = count;
  if (!error.empty()) {
    out["error"] = error;
  }
  out["mapped"] = Snapshot(pid);
  const auto per_mapping = static_cast<double>(std::max<uint64_t>(count, 1));
  const auto delta = [&](const char* field) {
    return (static_cast<double>(out["mapped"][field].get<uint64_t>()) -
            static_cast<double>(out["with_region"][field].get<uint64_t>())) /
           per_mapping;
  };
  out["bytes_per_mapping"] = {{"rss_anon", delta("rss_anon")},
                              {"vm_rss", delta("vm_rss")},
                              {"rss_shmem", delta("rss_shmem")}};
  c = Fail(ECONNRESET, "closed");  // the session ends: vfiod frees its mappings and region
  out.update(WaitForRelease(pid, out["with_region"], out["mapped"]));
  out["after_close"] = Snapshot(pid);
  return out;
}

}  // namespace vfiod::bench
