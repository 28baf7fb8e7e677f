#include "service/policy.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cerrno>
#include <string>

#include "config_test_util.h"

namespace vfiod::service {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

Policy MakePolicy(const std::string& policy_json) {
  auto config = ParseConfig(R"({"policy": )" + policy_json + "}", testing::FakeNames());
  EXPECT_TRUE(config.has_value()) << config.error().message();
  return Policy(config ? config->policy : PolicyConfig{});
}

const Identity kRoot{.uid = 0, .gid = 0, .groups = {}};
const Identity kAlice{.uid = 1000, .gid = 1000, .groups = {}};
const Identity kBob{.uid = 1001, .gid = 1001, .groups = {2000}};      // in devs
const Identity kCarol{.uid = 1002, .gid = 2001, .groups = {100, 5}};  // primary group ops
const DeviceId kEdu{.bdf = "0000:00:03.0", .vendor = 0x1234, .device = 0x11e8};
const DeviceId kIvshmem{.bdf = "0000:00:04.0", .vendor = 0x1af4, .device = 0x1110};
const DeviceId kNvme{.bdf = "0000:00:05.0", .vendor = 0x1b36, .device = 0x0010};

// The reason of a denial, checking its errno; fails the test if allowed.
std::string Denial(const Result<void>& decision, int code = EACCES) {
  if (decision) {
    ADD_FAILURE() << "allowed";
    return {};
  }
  EXPECT_EQ(decision.error().code, code);
  EXPECT_EQ(decision.error().op, "policy");
  return decision.error().detail;
}

TEST(PolicyTest, RootMayDoEverythingEvenWithoutRules) {
  Policy policy = MakePolicy(R"({"root_only": ["device.unbind"]})");
  EXPECT_TRUE(policy.MayUseDevice(kRoot, kEdu));
  EXPECT_TRUE(policy.MayBind(kRoot, kNvme));
  EXPECT_TRUE(policy.MayCall(kRoot, "device.unbind"));
  EXPECT_EQ(policy.QuotaFor(kRoot),
            (Quota{.locked_bytes = kUnlimited, .mappings = kUnlimited, .containers = kUnlimited}));
}

TEST(PolicyTest, NobodyElseMayDoAnythingWithoutRules) {
  Policy policy = MakePolicy("{}");
  EXPECT_EQ(Denial(policy.MayUseDevice(kAlice, kEdu)),
            "no policy rule applies to uid 1000 (gid 1000)");
  EXPECT_EQ(Denial(policy.MayBind(kBob, kEdu)),
            "no policy rule applies to uid 1001 (gid 1001, groups 2000)");
  EXPECT_EQ(policy.QuotaFor(kAlice), Quota{});
  EXPECT_TRUE(policy.RulesFor(kAlice).empty());
}

TEST(PolicyTest, RulesApplyByUidPrimaryGidOrSupplementaryGroup) {
  Policy policy = MakePolicy(R"({"rules": [{"users": ["alice"], "devices": ["*"]},
                                           {"groups": ["devs"], "devices": ["*"]},
                                           {"groups": ["ops"], "devices": ["*"]},
                                           {"users": [1002], "groups": [5], "devices": ["*"]}]})");
  EXPECT_THAT(policy.RulesFor(kAlice), ElementsAre(0u));
  EXPECT_THAT(policy.RulesFor(kBob), ElementsAre(1u));
  EXPECT_THAT(policy.RulesFor(kCarol), ElementsAre(2u, 3u));
  EXPECT_TRUE(policy.MayUseDevice(kAlice, kEdu));
  EXPECT_TRUE(policy.MayUseDevice(kBob, kEdu));
  EXPECT_TRUE(policy.MayUseDevice(kCarol, kEdu));
  Identity dave{.uid = 1003, .gid = 1003, .groups = {100}};
  EXPECT_THAT(Denial(policy.MayUseDevice(dave, kEdu)),
              HasSubstr("no policy rule applies to uid 1003"));
}

TEST(PolicyTest, StarUserMatchesEveryone) {
  Policy policy = MakePolicy(R"({"rules": [{"users": ["*"], "devices": ["1234:11e8"]}]})");
  Identity stranger{.uid = 65534, .gid = 65534, .groups = {}};
  EXPECT_TRUE(policy.MayUseDevice(stranger, kEdu));
  EXPECT_FALSE(policy.MayUseDevice(stranger, kNvme));
}

TEST(PolicyTest, DevicesMatchByAddressOrIdOrStar) {
  Policy policy = MakePolicy(R"({"rules": [{"users": ["alice"], "devices": ["0000:00:03.0"]},
                                           {"users": ["bob"], "devices": ["1af4:1110"]},
                                           {"groups": ["ops"], "devices": ["*"]}]})");
  EXPECT_TRUE(policy.MayUseDevice(kAlice, kEdu));
  EXPECT_TRUE(policy.MayUseDevice(kAlice, DeviceId{"0000:00:03.0", 0xffff, 0xffff}));
  EXPECT_TRUE(policy.MayUseDevice(kAlice, DeviceId{"0000:00:03.0", 1, 2}));
  EXPECT_FALSE(policy.MayUseDevice(kAlice, kIvshmem));

  EXPECT_TRUE(policy.MayUseDevice(kBob, kIvshmem));
  EXPECT_TRUE(policy.MayUseDevice(kBob, DeviceId{"0000:07:00.0", 0x1af4, 0x1110}));
  EXPECT_FALSE(policy.MayUseDevice(kBob, DeviceId{"0000:07:00.0", 0x1af4, 0x1111}));

  EXPECT_TRUE(policy.MayUseDevice(kCarol, kEdu));
  EXPECT_TRUE(policy.MayUseDevice(kCarol, kNvme));
}

TEST(PolicyTest, AddressesCompareCaseInsensitively) {
  Policy policy = MakePolicy(R"({"rules": [{"users": ["alice"], "devices": ["0000:0A:1F.7"]}]})");
  EXPECT_TRUE(policy.MayUseDevice(kAlice, DeviceId{"0000:0a:1f.7", 1, 2}));
  EXPECT_TRUE(policy.MayUseDevice(kAlice, DeviceId{"0000:0A:1f.7", 1, 2}));
}

TEST(PolicyTest, DenialNamesTheApplyingRulesAndTheDevice) {
  Policy policy = MakePolicy(R"({"rules": [{"users": ["alice"], "devices": ["0000:00:04.0"]},
                                           {"users": ["bob"], "devices": ["*"]},
                                           {"users": ["alice"], "devices": ["1b36:0010"]}]})");
  EXPECT_EQ(Denial(policy.MayUseDevice(kAlice, kEdu)),
            "policy.rules [0, 2] apply to uid 1000 (gid 1000) but no rule lists device "
            "0000:00:03.0 (1234:11e8)");
  Policy single = MakePolicy(R"({"rules": [{"users": ["alice"], "devices": []}]})");
  EXPECT_EQ(Denial(single.MayUseDevice(kAlice, kEdu)),
            "policy.rules[0] apply to uid 1000 (gid 1000) but no rule lists device "
            "0000:00:03.0 (1234:11e8)");
}

TEST(PolicyTest, MalformedAddressIsAnArgumentError) {
  Policy policy = MakePolicy(R"({"rules": [{"users": ["*"], "devices": ["*"]}]})");
  EXPECT_EQ(Denial(policy.MayUseDevice(kAlice, DeviceId{"00:03.0", 1, 2}), EINVAL),
            "\"00:03.0\" is not a PCI address");
  EXPECT_EQ(Denial(policy.MayBind(kRoot, DeviceId{"../../etc", 1, 2}), EINVAL),
            "\"../../etc\" is not a PCI address");
}

TEST(PolicyTest, BindNeedsMayBindOnARuleThatListsTheDevice) {
  Policy policy = MakePolicy(R"({"rules": [
      {"users": ["alice"], "devices": ["0000:00:03.0"], "may_bind": true},
      {"users": ["alice"], "devices": ["0000:00:04.0"]},
      {"users": ["bob"], "devices": ["*"], "may_bind": false},
      {"users": ["bob"], "devices": ["1b36:0010"], "may_bind": true}]})");
  EXPECT_TRUE(policy.MayBind(kAlice, kEdu));
  // alice's may_bind rule does not list ivshmem; the rule that does lacks may_bind.
  EXPECT_EQ(Denial(policy.MayBind(kAlice, kIvshmem)),
            "policy.rules[1] grant uid 1000 (gid 1000) device 0000:00:04.0 (1af4:1110) but no "
            "such rule sets may_bind");
  EXPECT_TRUE(policy.MayUseDevice(kAlice, kIvshmem));
  // Not even usable: the use denial is the reason.
  EXPECT_THAT(Denial(policy.MayBind(kAlice, kNvme)),
              HasSubstr("no rule lists device 0000:00:05.0"));
  EXPECT_TRUE(policy.MayBind(kBob, kNvme));
  EXPECT_EQ(Denial(policy.MayBind(kBob, kEdu)),
            "policy.rules[2] grant uid 1001 (gid 1001, groups 2000) device 0000:00:03.0 "
            "(1234:11e8) but no such rule sets may_bind");
}

TEST(PolicyTest, RootOnlyMethodsAreRefusedToOthersWithEperm) {
  Policy policy = MakePolicy(R"({"rules": [{"users": ["*"], "devices": ["*"], "may_bind": true}],
                                 "root_only": ["device.unbind", "stats"]})");
  EXPECT_TRUE(policy.IsRootOnly("device.unbind"));
  EXPECT_TRUE(policy.IsRootOnly("stats"));
  EXPECT_FALSE(policy.IsRootOnly("device.bind"));
  EXPECT_FALSE(policy.IsRootOnly("device"));
  EXPECT_FALSE(policy.IsRootOnly("stats.x"));
  EXPECT_TRUE(policy.MayCall(kAlice, "device.bind"));
  EXPECT_TRUE(policy.MayCall(kRoot, "stats"));
  EXPECT_EQ(Denial(policy.MayCall(kAlice, "stats"), EPERM),
            "method stats is listed in policy.root_only; uid 1000 (gid 1000) is not root");
}

TEST(PolicyTest, QuotaIsTheFieldwiseMaximumOfTheApplyingRules) {
  Policy policy = MakePolicy(R"({"rules": [
      {"users": ["alice"], "quota": {"locked_bytes": "1G", "mappings": 10, "containers": 8}},
      {"groups": ["devs"], "quota": {"locked_bytes": "2G", "mappings": 5, "containers": 1}},
      {"users": ["bob"], "quota": {"locked_bytes": "512M", "mappings": 7, "containers": 2}},
      {"groups": ["ops"], "quota": {"locked_bytes": "unlimited", "mappings": 0,
                                    "containers": 0}}]})");
  EXPECT_EQ(policy.QuotaFor(kAlice),
            (Quota{.locked_bytes = 1ULL << 30, .mappings = 10, .containers = 8}));
  EXPECT_EQ(policy.QuotaFor(kBob),  // rules 1 and 2
            (Quota{.locked_bytes = 2ULL << 30, .mappings = 7, .containers = 2}));
  EXPECT_EQ(policy.QuotaFor(kCarol),
            (Quota{.locked_bytes = kUnlimited, .mappings = 0, .containers = 0}));
  Identity alice_in_devs{.uid = 1000, .gid = 1000, .groups = {2000}};
  EXPECT_EQ(policy.QuotaFor(alice_in_devs),  // rules 0 and 1: not 3G, 15, 9
            (Quota{.locked_bytes = 2ULL << 30, .mappings = 10, .containers = 8}));
}

TEST(PolicyTest, RuleWithoutQuotaGrantsTheDefaultQuota) {
  Policy policy = MakePolicy(R"({"rules": [{"users": ["alice"], "devices": ["*"]}]})");
  EXPECT_EQ(policy.QuotaFor(kAlice), kDefaultRuleQuota);
  EXPECT_EQ(policy.QuotaFor(kBob), Quota{});
}

TEST(PolicyTest, DescribeListsUidGidAndGroups) {
  EXPECT_EQ(Describe(kAlice), "uid 1000 (gid 1000)");
  EXPECT_EQ(Describe(kCarol), "uid 1002 (gid 2001, groups 100,5)");
}

}  // namespace
}  // namespace vfiod::service
