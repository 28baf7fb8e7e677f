// Timing and summary statistics for the benchmarks. Every figure a benchmark
// prints is computed here from samples it measured; nothing is typed in.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace vfiod::bench {

using Clock = std::chrono::steady_clock;

/// Seconds from `start` to now.
[[nodiscard]] double SecondsSince(Clock::time_point start);

/// Runs `fn` once and returns its wall time in seconds.
template <class Fn>
[[nodiscard]] double TimeSeconds(Fn&& fn) {
  const Clock::time_point start = Clock::now();
  fn();
  return SecondsSince(start);
}

/// Mean, extremes and percentiles of a set of samples (any unit).
struct Summary {
  size_t count = 0;
  double mean = 0;
  double min = 0;
  double max = 0;
  double p50 = 0;
  double p90 = 0;
  double p99 = 0;
};

/// Summarises `samples` (empty: all zero). Percentiles are nearest-rank.
[[nodiscard]] Summary Summarize(std::vector<double> samples);
[[nodiscard]] nlohmann::json ToJson(const Summary& s);

/// Decimal gigabytes per second, as the VFIO map test programs print them.
[[nodiscard]] double GBps(uint64_t bytes, double seconds);

/// `a / b`, or 0 when b is 0 (a ratio that cannot be formed is printed as 0).
[[nodiscard]] double Ratio(double a, double b);

/// "256M", "1G", "4K": the largest binary unit that divides `bytes`.
[[nodiscard]] std::string SizeName(uint64_t bytes);

/// printf into a std::string.
[[nodiscard]] std::string Format(const char* fmt, ...) __attribute__((format(printf, 1, 2)));

/// Writes `doc` to `path` (pretty, 2 spaces); false with a message on stderr
/// when the file cannot be written.
bool WriteJsonFile(const std::string& path, const nlohmann::json& doc);

/// A benchmark's main: runs `main_fn`, and an exception that escapes it (a
/// reply of a shape the benchmark did not expect, say) ends the program with
/// a message naming `name` and exit code 70 (EX_SOFTWARE).
[[nodiscard]] int GuardedMain(const char* name, int (*main_fn)(int, char**), int argc, char** argv);

/// Host facts for the results: kernel release, CPU model, CPU count.
[[nodiscard]] nlohmann::json MachineFacts();

}  // namespace vfiod::bench
