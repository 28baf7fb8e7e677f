// The "device" section of the config: parsed strictly, its keys documented in
// config/README.md and spelled out in the shipped config/vfiod.json. That
// release_grace_seconds reaches the service is release_service_test.cc's
// (the grace_ms of device.release_requested, and the revoke after it).
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

std::string Refusal(const std::string& text) {
  auto config = ParseConfig(text, testing::FakeNames());
  return config ? "accepted" : config.error().detail;
}

TEST(DeviceConfigTest, GraceDefaultsToTenSecondsAndIsBounded) {
  auto defaults = ParseConfig("{}", testing::FakeNames());
  ASSERT_TRUE(defaults.has_value());
  EXPECT_EQ(defaults->device.release_grace_seconds, 10U);
  auto none = ParseConfig(R"({"device": {"release_grace_seconds": 0}})", testing::FakeNames());
  ASSERT_TRUE(none.has_value()) << none.error().message();
  EXPECT_EQ(none->device.release_grace_seconds, 0U);
  EXPECT_EQ(Refusal(R"({"device": {"release_grace_seconds": 3601}})")
                .rfind("device.release_grace_seconds:", 0),
            0U);
  EXPECT_NE(Refusal(R"({"device": {"release_grace_seconds": -1}})"), "accepted");
  EXPECT_NE(Refusal(R"({"device": {"release_grace_seconds": "10"}})"), "accepted");
  EXPECT_EQ(Refusal(R"({"device": {"grace": 1}})").rfind("device.grace: unknown key", 0), 0U)
      << Refusal(R"({"device": {"grace": 1}})");
}

TEST(DeviceConfigTest, TheDocumentedAndShippedKeysAreTheParsedOnes) {
  std::set<std::string> parsed;
  for (std::string_view k : DeviceKeys()) {
    parsed.emplace(k);
  }
  const auto documented = vfiod::testing::DocumentedConfigKeys(VFIOD_SOURCE_DIR, "device");
  ASSERT_TRUE(documented.has_value());
  EXPECT_EQ(*documented, parsed);
  std::ifstream in(std::string(VFIOD_SOURCE_DIR) + "/config/vfiod.json");
  std::stringstream text;
  text << in.rdbuf();
  std::set<std::string> in_file;
  const nlohmann::json shipped = nlohmann::json::parse(text.str());
  for (const auto& [key, value] : shipped.at("device").items()) {
    in_file.insert(key);
  }
  EXPECT_EQ(in_file, parsed);
}

// The "logging" section the same way: every key it parses is in
// config/README.md's table and in the shipped config, and no other.
TEST(LoggingConfigTest, TheDocumentedAndShippedKeysAreTheParsedOnes) {
  std::set<std::string> parsed;
  for (std::string_view k : LoggingKeys()) {
    parsed.emplace(k);
  }
  const auto documented = vfiod::testing::DocumentedConfigKeys(VFIOD_SOURCE_DIR, "logging");
  ASSERT_TRUE(documented.has_value());
  EXPECT_EQ(*documented, parsed);
  std::ifstream in(std::string(VFIOD_SOURCE_DIR) + "/config/vfiod.json");
  std::stringstream text;
  text << in.rdbuf();
  std::set<std::string> in_file;
  const nlohmann::json shipped = nlohmann::json::parse(text.str());
  for (const auto& [key, value] : shipped.at("logging").items()) {
    in_file.insert(key);
  }
  EXPECT_EQ(in_file, parsed);
}

}  // namespace
}  // namespace vfiod::service
