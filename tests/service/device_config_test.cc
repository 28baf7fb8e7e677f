// The "device" section of the config: parsed strictly, its keys (and the
// "logging" section's) documented in config/README.md and spelled out in the
// shipped config/vfiod.json. That release_grace_seconds reaches the service
// is release_service_test.cc's (the grace_ms of device.release_requested, and
// the revoke after it).
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <span>
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

// The keys `section` parses are those config/README.md documents for it and
// those the shipped config/vfiod.json spells out, and no others.
void ExpectParsedKeysDocumentedAndShipped(const std::string& section,
                                          std::span<const std::string_view> keys) {
  const std::set<std::string> parsed(keys.begin(), keys.end());
  const auto documented = vfiod::testing::DocumentedConfigKeys(VFIOD_SOURCE_DIR, section);
  ASSERT_TRUE(documented.has_value());
  EXPECT_EQ(*documented, parsed);
  std::ifstream in(std::string(VFIOD_SOURCE_DIR) + "/config/vfiod.json");
  std::stringstream text;
  text << in.rdbuf();
  std::set<std::string> in_file;
  const nlohmann::json shipped = nlohmann::json::parse(text.str());
  for (const auto& [key, value] : shipped.at(section).items()) {
    in_file.insert(key);
  }
  EXPECT_EQ(in_file, parsed);
}

TEST(DeviceConfigTest, TheDocumentedAndShippedKeysAreTheParsedOnes) {
  ExpectParsedKeysDocumentedAndShipped("device", DeviceKeys());
}

TEST(LoggingConfigTest, TheDocumentedAndShippedKeysAreTheParsedOnes) {
  ExpectParsedKeysDocumentedAndShipped("logging", LoggingKeys());
}

}  // namespace
}  // namespace vfiod::service
