// The Prometheus text exposition format, version 0.0.4: the one place that
// knows its grammar (HELP/TYPE lines, metric and label names, label value
// and HELP escaping, number spelling, histogram series). What vfiod exports
// is chosen in metrics.cc; this file only writes it.
//
// Not thread-safe: one writer builds one text on one thread.
#pragma once

#include <cstdint>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace vfiod::service {

/// The HTTP Content-Type of the format, for whoever serves the text.
inline constexpr std::string_view kExpositionContentType = "text/plain; version=0.0.4";

/// A sample's labels, in the order they are written. Names must match
/// [a-zA-Z_][a-zA-Z0-9_]* and not start with "__"; values are any UTF-8 text
/// (escaped here).
using Labels = std::vector<std::pair<std::string, std::string>>;

enum class MetricType { kCounter, kGauge, kHistogram };

class Exposition {
 public:
  /// Starts the family `name` (a valid metric name, each family once per
  /// text): writes its `# HELP` (escaped) and `# TYPE` lines. The samples
  /// that follow, up to the next Family, belong to it. A counter's name ends
  /// in `_total`. A name that breaks these rules is a bug in the caller: it
  /// aborts (so tests catch it at once rather than exporting a bad text).
  void Family(std::string_view name, MetricType type, std::string_view help);
  /// One sample of the current counter or gauge family.
  void Sample(const Labels& labels, uint64_t value);
  void Sample(const Labels& labels, double value);
  /// The series of one histogram of the current histogram family, from
  /// microsecond bucket bounds and per-bucket (not cumulative) counts with
  /// one more count than bounds (the +Inf bucket): `_bucket{le=...}`
  /// cumulative in seconds with `+Inf`, `_sum` in seconds, `_count`.
  void Histogram(const Labels& labels, std::span<const uint64_t> bounds_us,
                 std::span<const uint64_t> counts, uint64_t sum_us);
  /// The text so far (every line ends in '\n'); the writer is left empty.
  [[nodiscard]] std::string Take();

  /// A label value or HELP text escaped as the format wants: backslash and
  /// newline always, the double quote in label values only.
  [[nodiscard]] static std::string EscapeLabelValue(std::string_view value);
  [[nodiscard]] static std::string EscapeHelp(std::string_view help);
  /// A float as the format spells it: shortest round-trip decimal, or
  /// +Inf, -Inf, NaN.
  [[nodiscard]] static std::string FormatFloat(double value);

 private:
  void WriteSeries(std::string_view suffix, const Labels& labels, const std::string* le,
                   std::string_view value);

  std::string text_;
  std::string family_;  // the current family's name
  MetricType type_ = MetricType::kGauge;
  std::set<std::string, std::less<>> families_;  // names written so far
};

}  // namespace vfiod::service
