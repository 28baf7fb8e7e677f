#include "service/config.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <fstream>
#include <map>
#include <string>

#include "config_test_util.h"

namespace vfiod::service {
namespace {

using testing::FakeNames;
using ::testing::HasSubstr;
using ::testing::StartsWith;

Config Parse(const std::string& text) {
  auto config = ParseConfig(text, FakeNames());
  EXPECT_TRUE(config.has_value()) << config.error().message();
  return config.value_or(Config{});
}

// The detail of a refused config; fails the test if it was accepted.
std::string Refusal(const std::string& text) {
  auto config = ParseConfig(text, FakeNames());
  if (config) {
    ADD_FAILURE() << "accepted: " << text;
    return {};
  }
  EXPECT_EQ(config.error().code, EINVAL);
  EXPECT_EQ(config.error().op, "config");
  return config.error().detail;
}

TEST(ConfigTest, EmptyObjectGivesDocumentedDefaults) {
  Config config = Parse("{}");
  EXPECT_EQ(config.socket.path, "/run/vfiod/vfiod.sock");
  EXPECT_EQ(config.socket.group, "vfio-users");
  EXPECT_EQ(config.socket.gid, 990u);
  EXPECT_EQ(config.socket.mode, 0660u);
  EXPECT_EQ(config.kernel, KernelKind::kLinux);
  EXPECT_EQ(config.sysfs_root, "/sys");
  EXPECT_EQ(config.thp_tmpfs, std::nullopt);
  EXPECT_EQ(config.limits.max_frame_bytes, 1u << 20);
  EXPECT_EQ(config.limits.max_inflight_per_client, 32u);
  EXPECT_EQ(config.limits.max_clients, 128u);
  EXPECT_EQ(config.limits.worker_threads, 2u);
  EXPECT_EQ(config.limits.map_chunk_bytes, 1ULL << 30);
  EXPECT_EQ(config.limits.max_batch, 256u);
  EXPECT_EQ(config.logging.level, LogLevel::kInfo);
  EXPECT_EQ(config.logging.target, LogTarget::kAuto);
  EXPECT_TRUE(config.policy.rules.empty());
  EXPECT_TRUE(config.policy.root_only.empty());
  EXPECT_TRUE(config.model.devices.empty());
  ASSERT_EQ(config.model.iova_ranges.size(), 2u);
  EXPECT_EQ(config.model.iova_ranges[0].last, 0xfedfffffu);
  EXPECT_EQ(config.model.iova_ranges[1].start, 0xfef00000u);
  EXPECT_EQ(config.model.dma_entry_limit, 65535u);
  EXPECT_EQ(config.model.map_dma_us_per_mib, 0u);
}

TEST(ConfigTest, ShippedDefaultFileLoadsAndMatchesTheBuiltInDefaults) {
  auto config = LoadConfig(VFIOD_SOURCE_DIR "/config/vfiod.json", FakeNames());
  ASSERT_TRUE(config.has_value()) << config.error().message();
  Config defaults = Parse("{}");
  EXPECT_EQ(config->socket.path, defaults.socket.path);
  EXPECT_EQ(config->socket.gid, defaults.socket.gid);
  EXPECT_EQ(config->socket.mode, defaults.socket.mode);
  EXPECT_EQ(config->limits.max_frame_bytes, defaults.limits.max_frame_bytes);
  EXPECT_EQ(config->limits.map_chunk_bytes, defaults.limits.map_chunk_bytes);
  EXPECT_EQ(config->limits.max_batch, defaults.limits.max_batch);
  ASSERT_EQ(config->policy.rules.size(), 1u);
  const PolicyRule& rule = config->policy.rules[0];
  EXPECT_THAT(rule.gids, ::testing::ElementsAre(990u));
  ASSERT_EQ(rule.devices.size(), 1u);
  EXPECT_EQ(rule.devices[0].kind, DevicePattern::Kind::kAny);
  EXPECT_FALSE(rule.may_bind);
  EXPECT_EQ(rule.quota, kDefaultRuleQuota);
  EXPECT_THAT(config->policy.root_only, ::testing::ElementsAre("device.unbind"));
  EXPECT_EQ(config->thp_tmpfs, "/run/vfiod-thp");  // the unit's TemporaryFileSystem=
  EXPECT_EQ(config->reset, defaults.reset);
}

TEST(ConfigTest, ResetSectionDefaultsAndValues) {
  const ResetConfig defaults = Parse("{}").reset;
  EXPECT_TRUE(defaults.between_owners);
  EXPECT_EQ(defaults.without_reset, WithoutReset::kRefuse);  // multi-tenant: fail closed
  EXPECT_FALSE(defaults.on_destroy);
  const ResetConfig set = Parse(R"({"reset": {"between_owners": false,
                                  "without_reset": "hand_over", "on_destroy": true}})")
                              .reset;
  EXPECT_FALSE(set.between_owners);
  EXPECT_EQ(set.without_reset, WithoutReset::kHandOver);
  EXPECT_TRUE(set.on_destroy);
  EXPECT_EQ(WithoutResetName(set.without_reset), "hand_over");
  EXPECT_THAT(Refusal(R"({"reset": {"without_reset": "allow"}})"),
              StartsWith("reset.without_reset: expected one of \"refuse\", \"hand_over\""));
  EXPECT_THAT(Refusal(R"({"reset": {"between_owners": 1}})"), StartsWith("reset.between_owners:"));
  EXPECT_THAT(Refusal(R"({"reset": {"on_destory": true}})"),
              StartsWith("reset.on_destory: unknown key"));
}

// The shipped config's thp_tmpfs is the tmpfs vfiod.service mounts for it,
// with huge pages.
TEST(ConfigTest, ShippedThpTmpfsIsTheUnitsHugeTmpfs) {
  auto config = LoadConfig(VFIOD_SOURCE_DIR "/config/vfiod.json", FakeNames());
  ASSERT_TRUE(config.has_value()) << config.error().message();
  std::ifstream unit(VFIOD_SOURCE_DIR "/systemd/vfiod.service");
  std::string line;
  bool found = false;
  while (std::getline(unit, line)) {
    // Without a size limit: a shared one would let one client use up the others' space.
    found = found || line.starts_with("TemporaryFileSystem=" + config->thp_tmpfs.value_or("?") +
                                      ":huge=within_size,size=0,");
  }
  EXPECT_TRUE(found) << "vfiod.service mounts no huge tmpfs at " << config->thp_tmpfs.value_or("?");
}

TEST(ConfigTest, ThpTmpfsIsAnAbsolutePathOrNull) {
  EXPECT_EQ(Parse(R"({"thp_tmpfs": "/run/x"})").thp_tmpfs, "/run/x");
  EXPECT_EQ(Parse(R"({"thp_tmpfs": null})").thp_tmpfs, std::nullopt);
  EXPECT_EQ(Refusal(R"({"thp_tmpfs": "run/x"})"),
            "thp_tmpfs: expected an absolute path, not \"run/x\"");
}

// The example in config/README.md must stay a valid config.
TEST(ConfigTest, ReadmeExampleIsValid) {
  std::ifstream readme(VFIOD_SOURCE_DIR "/config/README.md");
  ASSERT_TRUE(readme.good());
  std::string text;
  for (std::string line; std::getline(readme, line);) {
    text += line + "\n";
  }
  size_t begin = text.find("```json\n");
  ASSERT_NE(begin, std::string::npos);
  begin += 8;
  size_t end = text.find("```", begin);
  ASSERT_NE(end, std::string::npos);
  Config config = Parse(text.substr(begin, end - begin));
  EXPECT_EQ(config.kernel, KernelKind::kModel);
  EXPECT_FALSE(config.socket.gid.has_value());
  ASSERT_EQ(config.model.devices.size(), 1u);
  EXPECT_TRUE(config.model.devices[0].bound);
}

// vfiod.socket creates the socket under systemd: it must agree with the
// shipped config, which is what vfiod uses when it creates the socket itself.
TEST(ConfigTest, ShippedSocketUnitMatchesShippedConfig) {
  auto config = LoadConfig(VFIOD_SOURCE_DIR "/config/vfiod.json", FakeNames());
  ASSERT_TRUE(config.has_value()) << config.error().message();
  std::ifstream unit(VFIOD_SOURCE_DIR "/systemd/vfiod.socket");
  ASSERT_TRUE(unit.good());
  std::map<std::string, std::string> settings;
  for (std::string line; std::getline(unit, line);) {
    if (auto eq = line.find('='); eq != std::string::npos && line[0] != '#') {
      settings[line.substr(0, eq)] = line.substr(eq + 1);
    }
  }
  EXPECT_EQ(settings["ListenStream"], config->socket.path);
  EXPECT_EQ(settings["SocketGroup"], config->socket.group);
  char mode[8];
  snprintf(mode, sizeof(mode), "%04o", static_cast<unsigned>(config->socket.mode));
  EXPECT_EQ(settings["SocketMode"], mode);
}

TEST(ConfigTest, FullExampleIsReadIntoTypedFields) {
  Config config = Parse(R"({
    "socket": {"path": "/tmp/v.sock", "group": "devs", "mode": "0600"},
    "kernel": "model", "sysfs_root": "/tmp/sys",
    "limits": {"max_frame_bytes": "64K", "max_inflight_per_client": 4, "max_clients": 9,
               "worker_threads": 3, "map_chunk_bytes": "2M", "max_batch": 7},
    "logging": {"level": "debug", "target": "stderr"},
    "policy": {"rules": [{"users": ["alice", 1234, "*"], "groups": ["ops", 7],
                          "devices": ["0000:0A:1F.7", "1234:11E8", "*"], "may_bind": true,
                          "quota": {"locked_bytes": "unlimited", "mappings": 3,
                                    "containers": "unlimited"}}],
               "root_only": ["device.bind", "stats"]},
    "model": {"devices": [{"bdf": "0000:00:03.0", "vendor": "0x1234", "device": "11e8",
                           "group": 3, "bound": true},
                          {"bdf": "0000:00:04.0", "vendor": 6900, "device": 4368, "group": 4}],
              "iova_ranges": [{"start": 0, "last": 4095}, {"start": 8192, "last": 16383}],
              "dma_entry_limit": 10, "map_dma_us_per_mib": 250}
  })");
  EXPECT_EQ(config.socket.path, "/tmp/v.sock");
  EXPECT_EQ(config.socket.gid, 2000u);
  EXPECT_EQ(config.socket.mode, 0600u);
  EXPECT_EQ(config.kernel, KernelKind::kModel);
  EXPECT_EQ(config.sysfs_root, "/tmp/sys");
  EXPECT_EQ(config.limits.max_frame_bytes, 64u << 10);
  EXPECT_EQ(config.limits.max_inflight_per_client, 4u);
  EXPECT_EQ(config.limits.max_clients, 9u);
  EXPECT_EQ(config.limits.worker_threads, 3u);
  EXPECT_EQ(config.limits.map_chunk_bytes, 2u << 20);
  EXPECT_EQ(config.limits.max_batch, 7u);
  EXPECT_EQ(config.logging.level, LogLevel::kDebug);
  EXPECT_EQ(config.logging.target, LogTarget::kStderr);

  ASSERT_EQ(config.policy.rules.size(), 1u);
  const PolicyRule& rule = config.policy.rules[0];
  EXPECT_THAT(rule.uids, ::testing::ElementsAre(1000u, 1234u));
  EXPECT_TRUE(rule.any_user);
  EXPECT_THAT(rule.gids, ::testing::ElementsAre(2001u, 7u));
  ASSERT_EQ(rule.devices.size(), 3u);
  EXPECT_EQ(rule.devices[0].kind, DevicePattern::Kind::kBdf);
  EXPECT_EQ(rule.devices[0].bdf, "0000:0a:1f.7");
  EXPECT_EQ(rule.devices[1].kind, DevicePattern::Kind::kId);
  EXPECT_EQ(rule.devices[1].vendor, 0x1234);
  EXPECT_EQ(rule.devices[1].device, 0x11e8);
  EXPECT_EQ(rule.devices[2].kind, DevicePattern::Kind::kAny);
  EXPECT_TRUE(rule.may_bind);
  EXPECT_EQ(rule.quota,
            (Quota{.locked_bytes = kUnlimited, .mappings = 3, .containers = kUnlimited}));
  EXPECT_THAT(config.policy.root_only, ::testing::ElementsAre("device.bind", "stats"));

  ASSERT_EQ(config.model.devices.size(), 2u);
  EXPECT_EQ(config.model.devices[0].bdf, "0000:00:03.0");
  EXPECT_EQ(config.model.devices[0].vendor, 0x1234);
  EXPECT_EQ(config.model.devices[0].device, 0x11e8);
  EXPECT_EQ(config.model.devices[0].group, 3u);
  EXPECT_TRUE(config.model.devices[0].bound);
  EXPECT_EQ(config.model.devices[1].vendor, 6900);
  EXPECT_FALSE(config.model.devices[1].bound);
  ASSERT_EQ(config.model.iova_ranges.size(), 2u);
  EXPECT_EQ(config.model.iova_ranges[1].start, 8192u);
  EXPECT_EQ(config.model.iova_ranges[1].last, 16383u);
  EXPECT_EQ(config.model.dma_entry_limit, 10u);
  EXPECT_EQ(config.model.map_dma_us_per_mib, 250u);
}

TEST(ConfigTest, QuotaFieldsLeftOutKeepTheirDefaults) {
  Config config = Parse(R"({"policy": {"rules": [{"users": ["bob"], "quota": {"mappings": 2}},
                                                 {"users": ["bob"]}]}})");
  ASSERT_EQ(config.policy.rules.size(), 2u);
  EXPECT_EQ(config.policy.rules[0].quota.mappings, 2u);
  EXPECT_EQ(config.policy.rules[0].quota.locked_bytes, kDefaultRuleQuota.locked_bytes);
  EXPECT_EQ(config.policy.rules[0].quota.containers, kDefaultRuleQuota.containers);
  EXPECT_EQ(config.policy.rules[1].quota, kDefaultRuleQuota);
}

TEST(ConfigTest, NullSocketGroupKeepsTheDaemonsGroup) {
  Config config = Parse(R"({"socket": {"group": null}})");
  EXPECT_EQ(config.socket.group, "");
  EXPECT_FALSE(config.socket.gid.has_value());
}

TEST(ConfigTest, NegativeQuotaIsRefusedWithItsPath) {
  EXPECT_EQ(Refusal(R"({"policy": {"rules": [{"users": ["alice"]},
                       {"users": ["bob"], "quota": {"locked_bytes": -1}}]}})"),
            "policy.rules[1].quota.locked_bytes: expected a non-negative integer");
  EXPECT_EQ(Refusal(R"({"policy": {"rules": [{"users": ["bob"], "quota": {"mappings": -5}}]}})"),
            "policy.rules[0].quota.mappings: expected a non-negative integer");
  EXPECT_EQ(Refusal(R"({"policy": {"rules": [{"users": ["bob"], "quota": {"containers": 1.5}}]}})"),
            "policy.rules[0].quota.containers: expected a non-negative integer");
}

TEST(ConfigTest, UnknownKeysAreRefusedAtEveryLevel) {
  EXPECT_THAT(Refusal(R"({"sockets": {}})"),
              StartsWith("sockets: unknown key (expected one of: socket, kernel,"));
  EXPECT_THAT(Refusal(R"({"socket": {"pth": "/x"}})"),
              StartsWith("socket.pth: unknown key (expected one of: path, group, mode)"));
  EXPECT_THAT(Refusal(R"({"policy": {"rules": [{"users": ["bob"]},
                         {"users": ["bob"], "quota": {"locked": 1}}]}})"),
              StartsWith("policy.rules[1].quota.locked: unknown key"));
  EXPECT_THAT(Refusal(R"({"model": {"devices": [{"bdf": "0000:00:03.0", "vendor": 1,
                         "device": 2, "group": 3, "iommu": 1}]}})"),
              StartsWith("model.devices[0].iommu: unknown key"));
}

TEST(ConfigTest, DuplicateKeysAreRefused) {
  EXPECT_THAT(Refusal(R"({"kernel": "linux", "kernel": "model"})"),
              HasSubstr("duplicate key \"kernel\""));
  EXPECT_THAT(Refusal(R"({"socket": {"mode": "0600", "mode": "0666"}})"),
              HasSubstr("duplicate key \"mode\""));
  // The same key in two sibling objects is not a duplicate.
  Parse(R"({"policy": {"rules": [{"users": ["bob"]}, {"users": ["alice"]}]}})");
}

TEST(ConfigTest, WrongTypesAreRefusedWithTheirPath) {
  EXPECT_EQ(Refusal(R"([])"), "expected an object");
  EXPECT_EQ(Refusal(R"({"socket": "/run/x"})"), "socket: expected an object");
  EXPECT_EQ(Refusal(R"({"socket": {"path": 5}})"), "socket.path: expected a string");
  EXPECT_EQ(Refusal(R"({"limits": {"max_batch": "10"}})"),
            "limits.max_batch: expected a non-negative integer");
  EXPECT_EQ(Refusal(R"({"policy": {"rules": {}}})"), "policy.rules: expected an array");
  EXPECT_EQ(Refusal(R"({"policy": {"rules": [{"users": ["bob"], "may_bind": "yes"}]}})"),
            "policy.rules[0].may_bind: expected true or false");
  EXPECT_EQ(Refusal(R"({"kernel": "xen"})"), "kernel: expected one of \"linux\", \"model\"");
  EXPECT_THAT(Refusal(R"({"logging": {"level": "verbose"}})"),
              StartsWith("logging.level: expected one of \"trace\", \"debug\", \"info\""));
  EXPECT_EQ(Refusal(R"({"logging": {"target": 1}})"),
            "logging.target: expected one of \"auto\", \"journal\", \"stderr\"");
}

TEST(ConfigTest, EachUsersLogBudgetHasADefaultAndBounds) {
  const Config defaults = Parse("{}");
  EXPECT_EQ(defaults.logging.user_lines_per_second, 10u);
  EXPECT_EQ(defaults.logging.user_burst, 200u);
  const Config off = Parse(R"({"logging": {"user_lines_per_second": 0, "user_burst": 5}})");
  EXPECT_EQ(off.logging.user_lines_per_second, 0u);
  EXPECT_EQ(off.logging.user_burst, 5u);
  EXPECT_THAT(Refusal(R"({"logging": {"user_lines_per_second": 100001}})"),
              StartsWith("logging.user_lines_per_second: "));
  EXPECT_THAT(Refusal(R"({"logging": {"user_burst": 0}})"), StartsWith("logging.user_burst: "));
}

TEST(ConfigTest, ModeMustBeAnOctalStringWithinPermissionBits) {
  EXPECT_EQ(Parse(R"({"socket": {"mode": "660"}})").socket.mode, 0660u);
  EXPECT_EQ(Parse(R"({"socket": {"mode": "0"}})").socket.mode, 0u);
  EXPECT_THAT(Refusal(R"({"socket": {"mode": "0968"}})"),
              StartsWith("socket.mode: expected an octal mode string"));
  EXPECT_THAT(Refusal(R"({"socket": {"mode": "rw-rw----"}})"),
              StartsWith("socket.mode: expected an octal mode string"));
  EXPECT_THAT(Refusal(R"({"socket": {"mode": 660}})"),
              StartsWith("socket.mode: expected an octal mode string"));
  EXPECT_EQ(Refusal(R"({"socket": {"mode": "1777"}})"),
            "socket.mode: mode \"1777\" has bits above 0777");
}

TEST(ConfigTest, MapChunkMustBeNonZeroAndPageAligned) {
  EXPECT_EQ(Parse(R"({"limits": {"map_chunk_bytes": 8192}})").limits.map_chunk_bytes, 8192u);
  EXPECT_EQ(Refusal(R"({"limits": {"map_chunk_bytes": 0}})"),
            "limits.map_chunk_bytes: must be a non-zero multiple of the 4K page size");
  EXPECT_EQ(Refusal(R"({"limits": {"map_chunk_bytes": 6000}})"),
            "limits.map_chunk_bytes: must be a non-zero multiple of the 4K page size");
  EXPECT_THAT(Refusal(R"({"limits": {"map_chunk_bytes": "1X"}})"),
              StartsWith("limits.map_chunk_bytes: expected a non-negative integer or a size"));
}

TEST(ConfigTest, CountsOutsideTheirRangeAreRefused) {
  EXPECT_EQ(Refusal(R"({"limits": {"worker_threads": 0}})"),
            "limits.worker_threads: must be between 1 and 256");
  EXPECT_EQ(Refusal(R"({"limits": {"max_frame_bytes": 100}})"),
            "limits.max_frame_bytes: must be between 4K and 256M");
  EXPECT_EQ(Refusal(R"({"model": {"dma_entry_limit": 0}})"),
            "model.dma_entry_limit: must be between 1 and 2147483647");
  EXPECT_EQ(Refusal(R"({"model": {"map_dma_us_per_mib": 1000001}})"),
            "model.map_dma_us_per_mib: must be between 0 and 1000000");
}

TEST(ConfigTest, PathsMustBeAbsoluteAndFitASocketAddress) {
  EXPECT_EQ(Refusal(R"({"socket": {"path": "vfiod.sock"}})"),
            "socket.path: expected an absolute path, not \"vfiod.sock\"");
  EXPECT_EQ(Refusal(R"({"sysfs_root": "sys"})"),
            "sysfs_root: expected an absolute path, not \"sys\"");
  EXPECT_EQ(Refusal(R"({"socket": {"path": ""}})"), "socket.path: must not be empty");
  std::string long_path = "/" + std::string(107, 'a');
  EXPECT_THAT(Refusal(R"({"socket": {"path": ")" + long_path + R"("}})"),
              StartsWith("socket.path: longer than a unix socket path may be (107 bytes)"));
  Parse(R"({"socket": {"path": ")" + long_path.substr(0, 107) + R"("}})");
}

TEST(ConfigTest, BadDevicePatternsAreRefused) {
  for (const char* bad : {"00:03.0", "0000:00:20.0", "0000:00:03.8", "0000:0g:03.0", "1234:11e",
                          "1234-11e8", "**", "0000:00:03.0 "}) {
    EXPECT_THAT(Refusal(std::string(R"({"policy": {"rules": [{"users": ["bob"], "devices": [")") +
                        bad + R"("]}]}})"),
                StartsWith("policy.rules[0].devices[0]: expected \"*\", a PCI address"))
        << bad;
  }
  EXPECT_THAT(Refusal(R"({"model": {"devices": [{"bdf": "0:0:3.0", "vendor": 1, "device": 2,
                         "group": 3}]}})"),
              StartsWith("model.devices[0].bdf: expected a PCI address such as"));
}

TEST(ConfigTest, UnknownUsersAndGroupsAreRefused) {
  EXPECT_EQ(Refusal(R"({"policy": {"rules": [{"users": ["alice", "mallory"]}]}})"),
            "policy.rules[0].users[1]: unknown user \"mallory\"");
  EXPECT_EQ(Refusal(R"({"policy": {"rules": [{"groups": ["wheel"]}]}})"),
            "policy.rules[0].groups[0]: unknown group \"wheel\"");
  EXPECT_EQ(Refusal(R"({"socket": {"group": "nogroup-here"}})"),
            "socket.group: unknown group \"nogroup-here\"");
  EXPECT_EQ(Refusal(R"({"policy": {"rules": [{"users": [-1]}]}})"),
            "policy.rules[0].users[0]: expected a non-negative integer");
  EXPECT_EQ(Refusal(R"({"policy": {"rules": [{"users": [4294967295]}]}})"),
            "policy.rules[0].users[0]: must be between 0 and 4294967294");
}

TEST(ConfigTest, RuleMustNameSomebody) {
  EXPECT_EQ(Refusal(R"({"policy": {"rules": [{"devices": ["*"]}]}})"),
            "policy.rules[0]: a rule must name at least one user (or \"*\") or group");
  EXPECT_EQ(Refusal(R"({"policy": {"rules": [{"users": [], "groups": []}]}})"),
            "policy.rules[0]: a rule must name at least one user (or \"*\") or group");
}

TEST(ConfigTest, RootOnlyTakesMethodNames) {
  EXPECT_EQ(Refusal(R"({"policy": {"root_only": ["device.bind", "Device.Bind"]}})"),
            "policy.root_only[1]: expected a method name such as \"device.bind\", not "
            "\"Device.Bind\"");
  EXPECT_THAT(Refusal(R"({"policy": {"root_only": ["dma..free"]}})"),
              StartsWith("policy.root_only[0]: expected a method name"));
}

TEST(ConfigTest, ModelTopologyIsChecked) {
  const std::string dev =
      R"({"bdf": "0000:00:03.0", "vendor": "1234", "device": "11e8", "group": 1})";
  EXPECT_EQ(Refusal(R"({"model": {"devices": [)" + dev + "," + dev + "]}}"),
            "model.devices[1].bdf: device 0000:00:03.0 is listed twice");
  EXPECT_THAT(Refusal(R"({"model": {"devices": [{"bdf": "0000:00:03.0", "vendor": 1,
                         "device": 2}]}})"),
              StartsWith("model.devices[0].group: missing"));
  EXPECT_THAT(Refusal(R"({"model": {"devices": [{"bdf": "0000:00:03.0", "vendor": "12345",
                         "device": 2, "group": 1}]}})"),
              StartsWith("model.devices[0].vendor: expected a hex id"));
  EXPECT_EQ(Refusal(R"({"model": {"devices": [{"bdf": "0000:00:03.0", "vendor": 70000,
                       "device": 2, "group": 1}]}})"),
            "model.devices[0].vendor: must be between 0 and 65535");
  EXPECT_EQ(Refusal(R"({"model": {"iova_ranges": [{"start": 0, "last": 100}]}})"),
            "model.iova_ranges[0]: start and last + 1 must be multiples of 4K");
  EXPECT_EQ(Refusal(R"({"model": {"iova_ranges": [{"start": 8192, "last": 4095}]}})"),
            "model.iova_ranges[0]: last is below start");
  EXPECT_EQ(Refusal(R"({"model": {"iova_ranges": [{"start": 0, "last": 8191},
                       {"start": 4096, "last": 12287}]}})"),
            "model.iova_ranges[1]: ranges must be sorted and must not overlap");
  EXPECT_EQ(Refusal(R"({"model": {"iova_ranges": []}})"),
            "model.iova_ranges: at least one IOVA range is needed");
}

TEST(ConfigTest, MalformedJsonIsRefusedWithItsPosition) {
  EXPECT_THAT(Refusal("{\"kernel\": \"linux\",\n}"), HasSubstr("line 2"));
  EXPECT_THAT(Refusal(""), HasSubstr("parse error"));
  EXPECT_THAT(Refusal("{} trailing"), HasSubstr("parse error"));
}

TEST(ConfigTest, LoadReportsFileErrorsWithErrno) {
  auto missing = LoadConfig("/nonexistent/vfiod.json", FakeNames());
  ASSERT_FALSE(missing.has_value());
  EXPECT_EQ(missing.error().code, ENOENT);
  EXPECT_THAT(missing.error().op, HasSubstr("/nonexistent/vfiod.json"));

  auto directory = LoadConfig("/", FakeNames());
  ASSERT_FALSE(directory.has_value());
  EXPECT_EQ(directory.error().code, EISDIR);
}

TEST(ConfigTest, LoadNamesTheFileInValidationErrors) {
  char path[] = "/tmp/vfiod-config-test-XXXXXX";
  int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  close(fd);
  std::ofstream(path) << R"({"limits": {"max_batch": 0}})";
  auto config = LoadConfig(path, FakeNames());
  unlink(path);
  ASSERT_FALSE(config.has_value());
  EXPECT_EQ(config.error().code, EINVAL);
  EXPECT_EQ(config.error().op, std::string("config ") + path);
  EXPECT_EQ(config.error().detail, "limits.max_batch: must be between 1 and 65536");
}

TEST(ConfigTest, SystemResolverKnowsRootAndNotNonsense) {
  NameResolver names = SystemNameResolver();
  EXPECT_EQ(names.user("root"), std::optional<uid_t>(0));
  EXPECT_EQ(names.group("root"), std::optional<gid_t>(0));
  EXPECT_EQ(names.user("no-such-user-vfiod-test"), std::nullopt);
  EXPECT_EQ(names.group("no-such-group-vfiod-test"), std::nullopt);
  auto config = ParseConfig(R"({"socket": {"group": "root"},
                               "policy": {"rules": [{"users": ["root"]}]}})",
                            names);
  ASSERT_TRUE(config.has_value()) << config.error().message();
  EXPECT_EQ(config->socket.gid, std::optional<gid_t>(0));
  EXPECT_THAT(config->policy.rules[0].uids, ::testing::ElementsAre(0u));
}

}  // namespace
}  // namespace vfiod::service
