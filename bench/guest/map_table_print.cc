#include "guest/map_table_print.h"

#include <cstdio>
#include <string>

#include "common/stats.h"

namespace vfiod::bench {
namespace {

double Get(const nlohmann::json& j, const char* a, const char* b) { return j[a][b].get<double>(); }

// "VFIO MAP DMA in X s (Y GB/s) med M min N" for one operation's OpJson.
std::string OpText(const char* what, const nlohmann::json& op) {
  return Format("VFIO %s DMA in %.5f s (%.1f GB/s) med %.5f min %.5f", what,
                op["mean_s"].get<double>(), op["gbps"].get<double>(), op["median_s"].get<double>(),
                op["min_s"].get<double>());
}

void PrintColumn(const char* label, const nlohmann::json& column) {
  (void)std::fprintf(stderr, "    %-10s %s | %s\n", label, OpText("MAP", column["map"]).c_str(),
                     OpText("UNMAP", column["unmap"]).c_str());
}

// The daemon's own time of the calls and the gap to the client's time.
void PrintServer(const char* label, const nlohmann::json& column) {
  const nlohmann::json& server = column["server"];
  const nlohmann::json& gap = column["gap"];
  (void)std::fprintf(
      stderr,
      "    %-10s server map %.5f s (med %.5f), free %.5f s (med %.5f); client - server: "
      "map p50 %.2f ms p90 %.2f ms, free p50 %.2f ms p90 %.2f ms\n",
      label, Get(server, "map", "mean_s"), Get(server, "map", "median_s"),
      Get(server, "unmap", "mean_s"), Get(server, "unmap", "median_s"),
      1e3 * Get(gap, "map", "p50"), 1e3 * Get(gap, "map", "p90"), 1e3 * Get(gap, "unmap", "p50"),
      1e3 * Get(gap, "unmap", "p90"));
}

void PrintBreakdown(const Breakdown& parts) {
  (void)std::fprintf(stderr,
                     "    %-10s region: plan %.5f s (%llu page-info reads per map), MAP %.5f s | "
                     "UNMAP %.5f s; one-shot adds adopt %.5f s, release %.5f s\n",
                     "in-process", Mean(parts.plan_s),
                     static_cast<unsigned long long>(
                         parts.plan_s.empty() ? 0 : parts.plan_reads.calls / parts.plan_s.size()),
                     Mean(parts.map_s), Mean(parts.unmap_s), Mean(parts.adopt_s),
                     Mean(parts.release_s));
  (void)std::fprintf(stderr,
                     "    %-10s the daemon's view: vaddr %% 2M = %#llx, %llu MiB of it PMD-mapped "
                     "shmem; IOVA congruence %#llx\n",
                     "", static_cast<unsigned long long>(parts.view_offset_2m),
                     static_cast<unsigned long long>(parts.pmd_mapped >> 20),
                     static_cast<unsigned long long>(parts.congruence));
}

}  // namespace

void PrintRow(const nlohmann::json& row, const Breakdown& parts) {
  const nlohmann::json& ping = row["ping_s"];
  (void)std::fprintf(
      stderr, "  %s, %s%s; %d rounds, idle ping p50 %.2f ms p90 %.2f ms mean %.2f ms\n",
      row["memory"].get<std::string>().c_str(), SizeName(row["size"].get<uint64_t>()).c_str(),
      row.contains("huge_fraction_raw") ? Format(" (huge: raw %.0f%%, memfd %.0f%%)",
                                                 100 * row["huge_fraction_raw"].get<double>(),
                                                 100 * row["huge_fraction_memfd"].get<double>())
                                              .c_str()
                                        : "",
      row["rounds"].get<int>(), 1e3 * ping["p50"].get<double>(), 1e3 * ping["p90"].get<double>(),
      1e3 * ping["mean"].get<double>());
  PrintColumn("raw", row["raw"]);
  PrintColumn("raw memfd", row["raw_memfd"]);
  PrintColumn("vfiod", row["vfiod"]);
  PrintColumn("one-shot", row["vfiod_oneshot"]);
  PrintServer("vfiod", row["vfiod"]);
  PrintServer("one-shot", row["vfiod_oneshot"]);
  PrintBreakdown(parts);
  for (const char* op : {"map", "unmap"}) {
    (void)std::fprintf(stderr,
                       "    %-10s %-5s mean %.3f  median %.3f  min %.3f  paired %.3f | bound %.3f "
                       "(mean round trip %.2f ms; %.3f with the p50) | server-only %.3f | one-shot "
                       "%.3f | vs raw memfd %.3f\n",
                       "ratio", op, Get(row, "ratio", op), Get(row, "ratio_median", op),
                       Get(row, "ratio_min", op), Get(row, "ratio_paired_median", op),
                       Get(row, "bound", op), 1e3 * Get(row, "bound", "round_trip_s"),
                       Get(row, "bound_p50_rt", op), Get(row, "ratio_server", op),
                       Get(row, "ratio_oneshot", op), Get(row, "ratio_vs_raw_memfd", op));
  }
}

void PrintSummary(const nlohmann::json& rows) {
  (void)std::fprintf(
      stderr,
      "\n  summary (ratio = raw / vfiod; bound = raw / (raw + mean idle ping); '*' = "
      "below 0.97 although the bound is not)\n");
  (void)std::fprintf(stderr, "  %-16s %-5s | %-28s | %-28s\n", "memory", "size",
                     "map: mean median min bound", "unmap: mean median min bound");
  for (const nlohmann::json& row : rows) {
    if (row.contains("error")) {
      (void)std::fprintf(
          stderr, "  %-16s %-5s | error: %s\n", row["memory"].get<std::string>().c_str(),
          SizeName(row["size"].get<uint64_t>()).c_str(), row["error"].get<std::string>().c_str());
      continue;
    }
    std::string cells;
    for (const char* op : {"map", "unmap"}) {
      const double ratio = Get(row, "ratio", op);
      const double bound = Get(row, "bound", op);
      cells +=
          Format("| %.3f%s %.3f %.3f %.3f      ", ratio, ratio < 0.97 && bound >= 0.97 ? "*" : " ",
                 Get(row, "ratio_median", op), Get(row, "ratio_min", op), bound);
    }
    (void)std::fprintf(stderr, "  %-16s %-5s %s\n", row["memory"].get<std::string>().c_str(),
                       SizeName(row["size"].get<uint64_t>()).c_str(), cells.c_str());
  }
}

}  // namespace vfiod::bench
