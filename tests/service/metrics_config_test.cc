// The "metrics" section of the config: parsed strictly, every key the parser
// accepts documented in config/README.md and spelled out in the shipped
// config/vfiod.json. That each key reaches the writer is proven with the
// real daemon (tests/integration/metrics_test.cc, DaemonWritesTheTextfile).
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "config_test_util.h"
#include "service/config.h"
#include "support/config_docs.h"

namespace vfiod::service {
namespace {

using testing::FakeNames;

Result<Config> Parse(const std::string& text) { return ParseConfig(text, FakeNames()); }

std::string Refusal(const std::string& text) {
  auto config = Parse(text);
  return config ? "accepted" : config.error().detail;
}

std::string ReadSource(const std::string& relative) {
  std::ifstream in(std::string(VFIOD_SOURCE_DIR) + "/" + relative);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

std::set<std::string> ParsedKeys() {
  std::set<std::string> keys;
  for (std::string_view k : MetricsKeys()) {
    keys.emplace(k);
  }
  return keys;
}

TEST(MetricsConfigTest, OffByDefault) {
  auto config = Parse("{}");
  ASSERT_TRUE(config.has_value());
  EXPECT_EQ(config->metrics.textfile, std::nullopt);
  EXPECT_EQ(config->metrics.interval_seconds, 15U);
  auto null_file = Parse(R"({"metrics": {"textfile": null}})");
  ASSERT_TRUE(null_file.has_value());
  EXPECT_EQ(null_file->metrics.textfile, std::nullopt);
}

TEST(MetricsConfigTest, ReadsBothKeys) {
  auto config = Parse(
      R"({"metrics": {"textfile": "/var/lib/prometheus/node-exporter/vfiod.prom",
                      "interval_seconds": 60}})");
  ASSERT_TRUE(config.has_value()) << config.error().message();
  EXPECT_EQ(config->metrics.textfile, "/var/lib/prometheus/node-exporter/vfiod.prom");
  EXPECT_EQ(config->metrics.interval_seconds, 60U);
}

TEST(MetricsConfigTest, RefusesWhatTheCollectorWouldNotRead) {
  EXPECT_EQ(Refusal(R"({"metrics": {"textfile": "vfiod.prom"}})"),
            "metrics.textfile: expected an absolute path, not \"vfiod.prom\"");
  EXPECT_EQ(Refusal(R"({"metrics": {"textfile": "/run/vfiod/vfiod.txt"}})"),
            "metrics.textfile: expected a file named *.prom (not a dot file), not "
            "\"/run/vfiod/vfiod.txt\"");
  EXPECT_NE(Refusal(R"({"metrics": {"textfile": "/run/vfiod/.vfiod.prom"}})"), "accepted");
  EXPECT_NE(Refusal(R"({"metrics": {"textfile": "/run/vfiod/.prom"}})"), "accepted");
  EXPECT_NE(Refusal(R"({"metrics": {"textfile": "/run/vfiod/"}})"), "accepted");
  EXPECT_NE(Refusal(R"({"metrics": {"interval_seconds": 0}})"), "accepted");
  EXPECT_NE(Refusal(R"({"metrics": {"interval_seconds": 86401}})"), "accepted");
  EXPECT_NE(Refusal(R"({"metrics": {"interval_seconds": "15"}})"), "accepted");
  EXPECT_EQ(Refusal(R"({"metrics": {"interval": 15}})").rfind("metrics.interval: unknown key", 0),
            0U)
      << Refusal(R"({"metrics": {"interval": 15}})");
}

TEST(MetricsConfigTest, TheDocumentedAndShippedKeysAreTheParsedOnes) {
  const auto documented = vfiod::testing::DocumentedConfigKeys(VFIOD_SOURCE_DIR, "metrics");
  ASSERT_TRUE(documented.has_value());
  EXPECT_EQ(*documented, ParsedKeys());
  nlohmann::json shipped = nlohmann::json::parse(ReadSource("config/vfiod.json"));
  std::set<std::string> in_file;
  for (const auto& [key, value] : shipped["metrics"].items()) {
    in_file.insert(key);
  }
  EXPECT_EQ(in_file, ParsedKeys());
  // The shipped file keeps the writer off (see config/README.md for why).
  auto config = LoadConfig(VFIOD_SOURCE_DIR "/config/vfiod.json", FakeNames());
  ASSERT_TRUE(config.has_value()) << config.error().message();
  EXPECT_EQ(config->metrics.textfile, std::nullopt);
}

}  // namespace
}  // namespace vfiod::service
