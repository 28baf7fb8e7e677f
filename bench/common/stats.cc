#include "common/stats.h"

#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <fstream>
#include <numeric>

namespace vfiod::bench {

double SecondsSince(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

namespace {

// Nearest-rank percentile of sorted samples: the smallest value with at least
// `pct` percent of the samples at or below it.
double Percentile(const std::vector<double>& sorted, double pct) {
  const auto n = static_cast<double>(sorted.size());
  auto rank = static_cast<size_t>(std::ceil(pct / 100.0 * n));
  rank = std::clamp<size_t>(rank, 1, sorted.size());
  return sorted[rank - 1];
}

}  // namespace

Summary Summarize(std::vector<double> samples) {
  Summary s;
  if (samples.empty()) {
    return s;
  }
  std::sort(samples.begin(), samples.end());
  s.count = samples.size();
  s.mean = std::accumulate(samples.begin(), samples.end(), 0.0) / static_cast<double>(s.count);
  s.min = samples.front();
  s.max = samples.back();
  s.p50 = Percentile(samples, 50);
  s.p90 = Percentile(samples, 90);
  s.p99 = Percentile(samples, 99);
  return s;
}

nlohmann::json ToJson(const Summary& s) {
  return {{"count", s.count}, {"mean", s.mean}, {"min", s.min}, {"max", s.max},
          {"p50", s.p50},     {"p90", s.p90},   {"p99", s.p99}};
}

double GBps(uint64_t bytes, double seconds) {
  return seconds > 0 ? static_cast<double>(bytes) / seconds / 1e9 : 0;
}

double Ratio(double a, double b) { return b != 0 ? a / b : 0; }

std::string SizeName(uint64_t bytes) {
  static constexpr const char* kUnits[] = {"", "K", "M", "G", "T"};
  int unit = 0;
  while (unit < 4 && bytes != 0 && bytes % 1024 == 0) {
    bytes /= 1024;
    ++unit;
  }
  return std::to_string(bytes) + kUnits[unit];
}

std::string Format(const char* fmt, ...) {
  va_list args;
  va_start(args, fmt);
  char buf[512];
  // NOLINTNEXTLINE(clang-analyzer-valist.Uninitialized): a false positive, va_start is above
  (void)std::vsnprintf(buf, sizeof buf, fmt, args);
  va_end(args);
  return buf;
}

bool WriteJsonFile(const std::string& path, const nlohmann::json& doc) {
  std::ofstream out(path);
  out << doc.dump(2) << '\n';
  if (!out) {
    (void)std::fprintf(stderr, "cannot write %s\n", path.c_str());
    return false;
  }
  return true;
}

nlohmann::json MachineFacts() {
  utsname u{};
  ::uname(&u);
  std::string cpu;
  std::ifstream in("/proc/cpuinfo");
  for (std::string line; std::getline(in, line);) {
    if (line.starts_with("model name")) {
      cpu = line.substr(line.find(':') + 2);
      break;
    }
  }
  std::string load;  // other work on the machine skews every figure: record it
  std::ifstream loadavg("/proc/loadavg");
  std::getline(loadavg, load);
  return {{"kernel", u.release},
          {"machine", u.machine},
          {"cpu", cpu},
          {"cpus", ::sysconf(_SC_NPROCESSORS_ONLN)},
          {"loadavg", load}};
}

int GuardedMain(const char* name, int (*main_fn)(int, char**), int argc, char** argv) {
  try {
    return main_fn(argc, argv);
  } catch (const std::exception& e) {
    (void)std::fprintf(stderr, "%s: fatal: %s\n", name, e.what());
    return 70;
  }
}

}  // namespace vfiod::bench
