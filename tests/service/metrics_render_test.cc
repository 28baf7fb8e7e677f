// The exposition writer (service/exposition.h) and RenderMetrics, read back
// by the tests' own strict parser (support/prom_parser.h); and the parser
// refusing each kind of broken text, so the daemon test built on it can fail.
#include <gtest/gtest.h>

#include "service/config.h"
#include "service/exposition.h"
#include "service/metrics.h"
#include "support/prom_parser.h"

namespace vfiod::service {
namespace {

using promtest::ParsePrometheusText;
using promtest::PromText;

PromText MustParse(const std::string& text) {
  auto parsed = ParsePrometheusText(text);
  EXPECT_TRUE(parsed.has_value()) << (parsed ? "" : parsed.error()) << "\n" << text;
  return parsed ? *parsed : PromText{};
}

TEST(ExpositionTest, LabelValuesAndHelpAreEscapedAndReadBack) {
  Exposition out;
  out.Family("x_info", MetricType::kGauge, "help with \\ and\nnewline and \"quotes\"");
  const std::string nasty = "a\"b\\c\nd}e,f=\"g";
  out.Sample({{"name", nasty}, {"plain", "ok"}}, uint64_t{7});
  const std::string text = out.Take();
  EXPECT_NE(text.find(R"(name="a\"b\\c\nd}e,f=\"g")"), std::string::npos) << text;
  EXPECT_NE(text.find("# HELP x_info help with \\\\ and\\nnewline and \"quotes\"\n"),
            std::string::npos)
      << text;
  PromText parsed = MustParse(text);
  EXPECT_EQ(parsed.Value("x_info", {{"name", nasty}, {"plain", "ok"}}), 7);
  EXPECT_EQ(parsed.families["x_info"].help, "help with \\ and\nnewline and \"quotes\"");
}

TEST(ExpositionTest, HistogramIsCumulativeInSecondsWithInf) {
  Exposition out;
  out.Family("x_duration_seconds", MetricType::kHistogram, "h");
  const uint64_t bounds[] = {100, 2'500'000};
  const uint64_t counts[] = {2, 3, 4};  // per bucket; the last above every bound
  out.Histogram({{"op", "map"}}, bounds, counts, 12'500'000);
  PromText parsed = MustParse(out.Take());
  EXPECT_EQ(parsed.Value("x_duration_seconds_bucket", {{"op", "map"}, {"le", "0.0001"}}), 2);
  EXPECT_EQ(parsed.Value("x_duration_seconds_bucket", {{"op", "map"}, {"le", "2.5"}}), 5);
  EXPECT_EQ(parsed.Value("x_duration_seconds_bucket", {{"op", "map"}, {"le", "+Inf"}}), 9);
  EXPECT_EQ(parsed.Value("x_duration_seconds_count", {{"op", "map"}}), 9);
  EXPECT_EQ(parsed.Value("x_duration_seconds_sum", {{"op", "map"}}), 12.5);
}

TEST(ExpositionTest, NumbersAreSpelledAsTheFormatWants) {
  EXPECT_EQ(Exposition::FormatFloat(0.0001), "0.0001");
  EXPECT_EQ(Exposition::FormatFloat(300), "300");
  EXPECT_EQ(Exposition::FormatFloat(HUGE_VAL), "+Inf");
  EXPECT_EQ(Exposition::FormatFloat(-HUGE_VAL), "-Inf");
  EXPECT_EQ(Exposition::FormatFloat(std::nan("")), "NaN");
}

TEST(ExpositionDeathTest, MisuseIsABugCaughtAtOnce) {
  EXPECT_DEATH(
      {
        Exposition out;
        out.Family("x_total", MetricType::kCounter, "h");
        out.Family("x_total", MetricType::kCounter, "h");
      },
      "twice");
  EXPECT_DEATH(
      {
        Exposition out;
        out.Family("x", MetricType::kCounter, "h");
      },
      "_total");
  EXPECT_DEATH(
      {
        Exposition out;
        out.Family("1x", MetricType::kGauge, "h");
      },
      "invalid metric name");
  EXPECT_DEATH(
      {
        Exposition out;
        out.Family("x", MetricType::kGauge, "h");
        out.Sample({{"le", "1"}}, uint64_t{1});
      },
      "invalid label name");
}

TEST(LatencyHistogramTest, BoundsAreInclusiveUpperBounds) {
  LatencyHistogram h;
  h.Observe(0);
  h.Observe(100);          // le 0.0001
  h.Observe(101);          // le 0.00025
  h.Observe(300'000'000);  // the last bound
  h.Observe(300'000'001);  // +Inf
  EXPECT_EQ(h.counts[0], 2U);
  EXPECT_EQ(h.counts[1], 1U);
  EXPECT_EQ(h.counts[LatencyHistogram::kBoundsUs.size() - 1], 1U);
  EXPECT_EQ(h.counts.back(), 1U);
  EXPECT_EQ(h.count, 5U);
  EXPECT_EQ(h.sum_us, 600'000'202U);
}

TEST(StatsTest, ErrorsAreCountedByCodeAndAddUp) {
  Stats stats;
  stats.RecordRequest(1000, "dma.free", 5, "");
  stats.RecordRequest(1000, "dma.free", 5, "not_found");
  stats.RecordRequest(1000, "dma.free", 5, "not_found");
  stats.RecordRequest(0, "dma.free", 5, "permission_denied");
  stats.RecordMap(1000, 4096, 1, 250);
  StatsSnapshot all = stats.Snapshot();
  EXPECT_EQ(all.by_method["dma.free"].errors, 3U);
  EXPECT_EQ(all.by_method["dma.free"].errors_by_code["not_found"], 2U);
  EXPECT_EQ(all.by_method["dma.free"].errors_by_code["permission_denied"], 1U);
  StatsSnapshot mine = stats.Snapshot(1000);
  EXPECT_EQ(mine.by_method["dma.free"].errors_by_code.size(), 1U);
  EXPECT_EQ(mine.map.latency.count, 1U);
  EXPECT_EQ(mine.map.latency.counts[1], 1U);  // 250 us: le 0.00025
}

MetricsView SampleView() {
  MetricsView v;
  v.status.version = "0.1.0";
  v.status.kernel = "model";
  v.status.containers = 1;
  v.status.mappings = 2;
  v.status.locked_bytes = 3 << 20;
  v.status.max_locked_bytes = kUnlimited;
  v.status.lingering.push_back(LingeringView{9, 1000, {3, 4}, {1000}, 5});
  ContainerView c;
  c.id = 5;
  c.name = "ring \"A\"\\1";
  c.owner_uid = 1000;
  c.mappings = 2;
  c.dma_entries_used = 3;
  c.iommu.dma_avail = 65532;
  v.containers.push_back(c);
  v.users[1000] = UserUsageView{3 << 20, 0, 2, 1};
  v.stats.by_method["dma.alloc"] = MethodStats{4, 1, 400, 200, {{"quota_exceeded", 1}}};
  v.stats.map.calls = 3;
  v.stats.map.latency.Observe(50);
  v.stats.map.latency.Observe(5000);
  v.stats.map.latency.Observe(400'000'000);
  return v;
}

TEST(RenderMetricsTest, EveryFigureIsThereUnderItsName) {
  PromText m = MustParse(RenderMetrics(SampleView()));
  EXPECT_EQ(
      m.Value("vfiod_info", {{"version", "0.1.0"}, {"api_version", "1"}, {"kernel", "model"}}), 1);
  EXPECT_EQ(m.Value("vfiod_containers"), 1);
  EXPECT_EQ(m.Value("vfiod_mappings"), 2);
  EXPECT_EQ(m.Value("vfiod_locked_bytes"), 3 << 20);
  EXPECT_FALSE(m.Value("vfiod_max_locked_bytes").has_value()) << "no cap: no series";
  EXPECT_EQ(m.Value("vfiod_lingering_containers"), 1);
  EXPECT_EQ(m.Value("vfiod_lingering_groups"), 2);
  EXPECT_EQ(m.Value("vfiod_user_locked_bytes", {{"uid", "1000"}}), 3 << 20);
  EXPECT_EQ(m.Value("vfiod_user_mappings", {{"uid", "1000"}}), 2);
  const promtest::PromLabels c = {
      {"container", "5"}, {"name", "ring \"A\"\\1"}, {"owner_uid", "1000"}};
  EXPECT_EQ(m.Value("vfiod_container_dma_entries_available", c), 65532);
  EXPECT_EQ(m.Value("vfiod_container_dma_entries", c), 3);
  EXPECT_EQ(m.Value("vfiod_requests_total", {{"method", "dma.alloc"}}), 4);
  EXPECT_EQ(
      m.Value("vfiod_request_errors_total", {{"method", "dma.alloc"}, {"code", "quota_exceeded"}}),
      1);
  EXPECT_EQ(m.Value("vfiod_request_seconds_total", {{"method", "dma.alloc"}}), 0.0004);
  EXPECT_EQ(m.Value("vfiod_map_duration_seconds_count"), 3);
  EXPECT_EQ(m.Value("vfiod_map_duration_seconds_bucket", {{"le", "0.0001"}}), 1);
  EXPECT_EQ(m.Value("vfiod_map_duration_seconds_bucket", {{"le", "300"}}), 2);
  EXPECT_EQ(m.Value("vfiod_map_duration_seconds_bucket", {{"le", "+Inf"}}), 3);
  EXPECT_EQ(m.Value("vfiod_unmap_duration_seconds_count"), 0);
  for (const auto& [name, family] : m.families) {
    EXPECT_TRUE(name.starts_with("vfiod_")) << name;
  }
}

// The parser the daemon test relies on refuses every kind of broken text.
TEST(PromParserTest, RefusesBrokenText) {
  const std::string ok = "# HELP a_total h\n# TYPE a_total counter\na_total 1\n";
  ASSERT_TRUE(ParsePrometheusText(ok).has_value());
  const char* kHist =
      "# HELP h h\n# TYPE h histogram\n"
      "h_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 3\nh_sum 4\nh_count 3\n";
  ASSERT_TRUE(ParsePrometheusText(kHist).has_value()) << ParsePrometheusText(kHist).error();
  const std::vector<std::pair<std::string, std::string>> broken = {
      {"no final newline", "# HELP a h\n# TYPE a gauge\na 1"},
      {"no TYPE", "# HELP a h\na 1\n"},
      {"no HELP", "# TYPE a gauge\na 1\n"},
      {"TYPE after sample", "# HELP a h\na 1\n# TYPE a gauge\n"},
      {"bad type", "# HELP a h\n# TYPE a summaryy\na 1\n"},
      {"two TYPEs", "# HELP a h\n# TYPE a gauge\n# TYPE a gauge\na 1\n"},
      {"bad name", "# HELP a h\n# TYPE a gauge\n1a 1\n"},
      {"bad value", "# HELP a h\n# TYPE a gauge\na one\n"},
      {"bad escape", "# HELP a h\n# TYPE a gauge\na{l=\"\\t\"} 1\n"},
      {"unterminated label", "# HELP a h\n# TYPE a gauge\na{l=\"x} 1\n"},
      {"label twice", "# HELP a h\n# TYPE a gauge\na{l=\"x\",l=\"y\"} 1\n"},
      {"reserved label", "# HELP a h\n# TYPE a gauge\na{__l=\"x\"} 1\n"},
      {"series twice", "# HELP a h\n# TYPE a gauge\na{l=\"x\"} 1\na{l=\"x\"} 2\n"},
      {"split group",
       "# HELP a h\n# TYPE a gauge\na 1\n# HELP b h\n# TYPE b gauge\nb 1\na{l=\"x\"} 2\n"},
      {"negative counter", "# HELP a_total h\n# TYPE a_total counter\na_total -1\n"},
      {"blank line", "# HELP a h\n# TYPE a gauge\n\na 1\n"},
      {"bad timestamp", "# HELP a h\n# TYPE a gauge\na 1 x\n"},
      {"not cumulative",
       "# HELP h h\n# TYPE h histogram\nh_bucket{le=\"1\"} 3\nh_bucket{le=\"+Inf\"} 2\n"
       "h_sum 4\nh_count 2\n"},
      {"no +Inf", "# HELP h h\n# TYPE h histogram\nh_bucket{le=\"1\"} 3\nh_sum 4\nh_count 3\n"},
      {"+Inf != count",
       "# HELP h h\n# TYPE h histogram\nh_bucket{le=\"+Inf\"} 3\nh_sum 4\nh_count 4\n"},
      {"bounds not increasing",
       "# HELP h h\n# TYPE h histogram\nh_bucket{le=\"2\"} 1\nh_bucket{le=\"1\"} 1\n"
       "h_bucket{le=\"+Inf\"} 1\nh_sum 4\nh_count 1\n"},
      {"no _sum", "# HELP h h\n# TYPE h histogram\nh_bucket{le=\"+Inf\"} 3\nh_count 3\n"},
      {"le outside a histogram", "# HELP a h\n# TYPE a gauge\na{le=\"1\"} 1\n"},
  };
  for (const auto& [why, text] : broken) {
    EXPECT_FALSE(ParsePrometheusText(text).has_value()) << why << ":\n" << text;
  }
}

}  // namespace
}  // namespace vfiod::service
