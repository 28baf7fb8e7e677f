// vfiod_bench_guest: benchmarks 1-5 of BENCHMARKS.md, run inside the test VM
// (tests/vm/vm_run.sh) on the real kernel: the DMA map table (raw vs through
// vfiod), batching, contiguity cost, IOVA placement, BAR mapping. Tables go to
// stderr, the figures as one JSON document to stdout (or --json FILE).
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <set>
#include <sstream>

#include "common/daemon_process.h"
#include "common/stats.h"
#include "guest/sections.h"

namespace vfiod::bench {
namespace {

std::string EnvOr(const char* name, const char* fallback) {
  const char* v = std::getenv(name);
  return v != nullptr ? v : fallback;
}

std::string ReadLine(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);
  return line;
}

uint64_t ParseSize(const std::string& text) {
  size_t used = 0;
  uint64_t value = std::stoull(text, &used);
  const std::string unit = text.substr(used);
  const uint64_t shift = unit == "K" ? 10 : unit == "M" ? 20 : unit == "G" ? 30 : 0;
  if (!unit.empty() && shift == 0) {
    throw CLI::ValidationError("--sizes", "unknown unit in " + text);
  }
  return value << shift;
}

// shmem THP is off by default; vfiod's "thp" backing and a client's THP memfd need "advise".
nlohmann::json PrepareGuest() {
  const std::string shmem = "/sys/kernel/mm/transparent_hugepage/shmem_enabled";
  nlohmann::json facts = {{"thp_enabled", ReadLine("/sys/kernel/mm/transparent_hugepage/enabled")},
                          {"thp_shmem_before", ReadLine(shmem)}};
  std::ofstream(shmem) << "advise\n";
  facts["thp_shmem"] = ReadLine(shmem);
  facts["hugepages_2m"] = ReadNumber("/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages");
  facts["hugepages_1g"] = ReadNumber("/sys/kernel/mm/hugepages/hugepages-1048576kB/nr_hugepages");
  std::ifstream meminfo("/proc/meminfo");
  for (std::string line; std::getline(meminfo, line);) {
    if (line.starts_with("MemTotal:")) {
      facts["mem_total_kb"] = std::stoull(line.substr(9));
    }
  }
  return facts;
}

int Main(int argc, char** argv) {
  GuestOptions options;
  options.edu_bdf = EnvOr("VFIOD_EDU_BDF", "0000:00:01.0");
  options.nvme_bdf = EnvOr("VFIOD_NVME_BDF", "0000:00:03.0");
  options.ivshmem_bdf = EnvOr("VFIOD_IVSHMEM_BDF", "0000:00:02.0");
  std::string sizes = "256M,1G";
  std::string sections = "map,batch,contig,place,bar,barvfiod";
  std::string json_path;
  CLI::App app{"vfiod benchmarks 1-5 (in the test VM, real kernel)"};
  app.add_option("--vfiod", options.vfiod, "the vfiod binary (for the map table)");
  app.add_option("--loops", options.loops, "map/unmap pairs per figure")->capture_default_str();
  app.add_option("--map-loops", options.map_loops, "interleaved rounds per map table row (item 1)")
      ->capture_default_str();
  app.add_option("--sizes", sizes, "map table sizes (4K, THP, 2M rows)")->capture_default_str();
  app.add_option("--sections", sections, "which of map,batch,contig,place,bar,barvfiod")
      ->capture_default_str();
  app.add_option("--json", json_path, "write the JSON here instead of stdout");
  try {
    app.parse(argc, argv);
    std::stringstream list(sizes);
    for (std::string item; std::getline(list, item, ',');) {
      options.sizes.push_back(ParseSize(item));
    }
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const std::exception& e) {
    std::cerr << "bad --sizes: " << e.what() << '\n';
    return 2;
  }
  std::set<std::string> wanted;
  std::stringstream list(sections);
  for (std::string item; std::getline(list, item, ',');) {
    wanted.insert(item);
  }

  nlohmann::json doc = {
      {"machine", MachineFacts()},
      {"host_loadavg_at_start", EnvOr("VFIOD_BENCH_HOST_LOADAVG", "")},
      {"guest", PrepareGuest()},
      {"devices",
       {{"vfiod", options.edu_bdf}, {"raw", options.nvme_bdf}, {"bar", options.ivshmem_bdf}}}};
  auto rig = GuestRig::Open(options.nvme_bdf, options.ivshmem_bdf);
  if (!rig) {
    (void)std::fprintf(stderr, "cannot open the raw container: %s\n",
                       rig.error().message().c_str());
    return 1;
  }
  doc["iova_pgsizes"] = (*rig)->iova_pgsizes();
  if (wanted.contains("map")) {
    doc["map_table"] = RunMapTable(**rig, options);
  }
  if (wanted.contains("batch")) {
    doc["batching"] = RunBatching(**rig, options);
  }
  if (wanted.contains("contig")) {
    doc["contiguity"] = RunContiguityCost(**rig, options);
  }
  if (wanted.contains("place")) {
    doc["placement"] = RunPlacement(**rig, options);
  }
  if (wanted.contains("bar")) {
    doc["bar"] = RunBar(**rig, options);
  }
  rig->reset();  // vfiod's container takes the BAR's group next
  if (wanted.contains("barvfiod")) {
    doc["bar_vfiod"] = RunBarVfiod(options);
  }
  const bool failed = doc.dump().find("\"error\"") != std::string::npos;
  if (json_path.empty()) {
    std::cout << doc.dump() << std::endl;
  } else if (!WriteJsonFile(json_path, doc)) {
    return 1;
  }
  return failed ? 1 : 0;
}

}  // namespace
}  // namespace vfiod::bench

int main(int argc, char** argv) {
  return vfiod::bench::GuardedMain("vfiod_bench_guest", vfiod::bench::Main, argc, argv);
}
