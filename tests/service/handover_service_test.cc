// Reset between owners in the service, on the model: a device reaches a user
// other than those who had it since its last reset only after a reset (the
// model's resets zero the device's memory, so what a user left in BAR0 tells
// whether one happened), and the reply says what was done.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>

#include "model_service.h"

namespace vfiod::service {
namespace {

using model_service::kEdu;

constexpr uid_t kA = 1000;
constexpr uid_t kB = 1001;
constexpr uint32_t kMark = 0x5ec2e7a5;  // what a tenant leaves in BAR0

/// Edu and ivshmem without a function reset, on the root bus: no reset at all.
kernel::ModelTopology NoReset() {
  kernel::ModelTopology t = model_service::Topology();
  for (auto& g : t.groups) {
    g.devices[0].can_reset = false;
  }
  return t;
}

/// Both users may use edu; `reset` is the config's reset section.
Config TwoUsers(const ResetConfig& reset) {
  Config config =
      model_service::EduConfig(kA, Quota{.locked_bytes = 4 << 20, .mappings = 2, .containers = 2});
  config.policy.rules[0].uids.push_back(kB);
  config.reset = reset;
  return config;
}

class HandOverTest : public model_service::ModelServiceTest {
 protected:
  explicit HandOverTest(const ResetConfig& reset = {},
                        kernel::ModelTopology t = model_service::Topology())
      : ModelServiceTest(std::move(t)) {
    Start(TwoUsers(reset));
  }

  ContainerId Create(const Caller& who, const ShareList& share = {}) {
    auto c = service_->CreateContainer(who, {kEdu}, share.empty() ? "" : "shared", share);
    EXPECT_TRUE(c.has_value()) << c.error().error.message();
    return c ? c->id : 0;
  }

  /// The offset of BAR0 in a device fd of edu (as device.info reports it).
  uint64_t Bar0(const Caller& who) {
    auto info = service_->DeviceInfo(who, kEdu);
    EXPECT_TRUE(info.has_value() && info->vfio && !info->vfio->regions.empty());
    return info && info->vfio ? info->vfio->regions[0].offset : 0;
  }

  /// device.open in `c` for `who`: writes `write` into BAR0 when given, and
  /// returns what BAR0 held before, with the reply's reset.
  std::pair<uint32_t, HandOverReset> Use(const Caller& who, ContainerId c,
                                         std::optional<uint32_t> write = std::nullopt) {
    const uint64_t bar0 = Bar0(who);
    auto opened = service_->OpenDevice(who, c, kEdu);
    EXPECT_TRUE(opened.has_value()) << opened.error().error.message();
    if (!opened) {
      return {0, HandOverReset::kNotNeeded};
    }
    uint32_t seen = 0;
    EXPECT_EQ(::pread(opened->fd.get(), &seen, sizeof seen, static_cast<off_t>(bar0)), 4);
    if (write) {
      EXPECT_EQ(::pwrite(opened->fd.get(), &*write, sizeof *write, static_cast<off_t>(bar0)), 4);
    }
    return {seen, opened->reset};
  }
};

TEST_F(HandOverTest, ANewUserGetsTheDeviceOnlyAfterAResetTheSameUserAsLeft) {
  Caller a = Open(kA);
  ContainerId ca = Create(a);
  // Nobody is known to have had it since vfiod started: reset first.
  EXPECT_EQ(Use(a, ca, kMark).second, HandOverReset::kFunction);
  auto again = Use(a, ca);
  EXPECT_EQ(again, std::pair(kMark, HandOverReset::kNotNeeded));
  ASSERT_TRUE(service_->DestroyContainer(a, ca).has_value());
  ContainerId next = Create(a);  // a new container: still only kA had it
  EXPECT_EQ(Use(a, next), std::pair(kMark, HandOverReset::kNotNeeded));
  ASSERT_TRUE(service_->DestroyContainer(a, next).has_value());

  Caller b = Open(kB);
  ContainerId cb = Create(b);
  EXPECT_EQ(Use(b, cb), std::pair(uint32_t{0}, HandOverReset::kFunction));
}

TEST_F(HandOverTest, AUserAContainerIsSharedWithIsAnotherUser) {
  Caller a = Open(kA);
  ContainerId c = Create(a, ShareList{{kB}, {}});
  Use(a, c, kMark);
  Caller b = Open(kB);
  EXPECT_EQ(Use(b, c, kMark + 1), std::pair(uint32_t{0}, HandOverReset::kFunction));
  EXPECT_EQ(Use(a, c), std::pair(uint32_t{0}, HandOverReset::kFunction));  // kB's is gone too
}

TEST_F(HandOverTest, RootNeedsNoResetButTheUserAfterRootGetsOne) {
  Caller root = Open(0);
  ContainerId c = Create(root);
  EXPECT_EQ(Use(root, c, kMark).second, HandOverReset::kNotNeeded);
  ASSERT_TRUE(service_->DestroyContainer(root, c).has_value());
  Caller a = Open(kA);
  EXPECT_EQ(Use(a, Create(a)), std::pair(uint32_t{0}, HandOverReset::kFunction));
}

class HandOverDisabledTest : public HandOverTest {
 protected:
  HandOverDisabledTest() : HandOverTest(ResetConfig{.between_owners = false}) {}
};

TEST_F(HandOverDisabledTest, TheNextUserSeesWhatTheLastLeft) {
  Caller a = Open(kA);
  ContainerId c = Create(a, ShareList{{kB}, {}});
  EXPECT_EQ(Use(a, c, kMark).second, HandOverReset::kDisabled);
  Caller b = Open(kB);
  EXPECT_EQ(Use(b, c), std::pair(kMark, HandOverReset::kDisabled));
}

class NoResetTest : public HandOverTest {
 protected:
  explicit NoResetTest(WithoutReset choice = WithoutReset::kRefuse)
      : HandOverTest(ResetConfig{.without_reset = choice}, NoReset()) {}
};

TEST_F(NoResetTest, AnotherUserIsRefusedWithAStableErrorTheSameUserIsNot) {
  Caller a = Open(kA);
  ContainerId c = Create(a, ShareList{{kB}, {}});
  // Nobody known before: handed over, and the reply says it was not reset.
  EXPECT_EQ(Use(a, c, kMark).second, HandOverReset::kUnavailable);
  Caller b = Open(kB);
  auto refused = service_->OpenDevice(b, c, kEdu);
  ASSERT_FALSE(refused.has_value());
  EXPECT_EQ(refused.error().kind, ErrorKind::kPermission);
  EXPECT_EQ(refused.error().error.code, ENOTTY);
  EXPECT_NE(refused.error().error.detail.find("uid 1000"), std::string::npos)
      << refused.error().error.detail;
  EXPECT_EQ(Use(a, c), std::pair(kMark, HandOverReset::kNotNeeded));
}

class NoResetHandOverTest : public NoResetTest {
 protected:
  NoResetHandOverTest() : NoResetTest(WithoutReset::kHandOver) {}
};

TEST_F(NoResetHandOverTest, HandedOverAsItIsAndTheReplySaysSo) {
  Caller a = Open(kA);
  ContainerId c = Create(a, ShareList{{kB}, {}});
  Use(a, c, kMark);
  Caller b = Open(kB);
  EXPECT_EQ(Use(b, c), std::pair(kMark, HandOverReset::kUnavailable));
}

class ResetOnDestroyTest : public HandOverTest {
 protected:
  ResetOnDestroyTest() : HandOverTest(ResetConfig{.on_destroy = true}) {}
};

TEST_F(ResetOnDestroyTest, TheDeviceIsResetAsItsContainerGoes) {
  Caller a = Open(kA);
  ContainerId c = Create(a);
  const uint64_t bar0 = Bar0(a);
  auto opened = service_->OpenDevice(a, c, kEdu);
  ASSERT_TRUE(opened.has_value());
  ASSERT_EQ(::pwrite(opened->fd.get(), &kMark, sizeof kMark, static_cast<off_t>(bar0)), 4);
  ASSERT_TRUE(service_->DestroyContainer(a, c).has_value());
  uint32_t seen = 1;
  EXPECT_EQ(::pread(opened->fd.get(), &seen, sizeof seen, static_cast<off_t>(bar0)), 4);
  EXPECT_EQ(seen, 0u);  // read through the fd the tenant kept
}

TEST_F(HandOverTest, WithoutOnDestroyTheDeviceKeepsItsStateAfterItsContainer) {
  Caller a = Open(kA);
  ContainerId c = Create(a);
  const uint64_t bar0 = Bar0(a);
  auto opened = service_->OpenDevice(a, c, kEdu);
  ASSERT_TRUE(opened.has_value());
  ASSERT_EQ(::pwrite(opened->fd.get(), &kMark, sizeof kMark, static_cast<off_t>(bar0)), 4);
  ASSERT_TRUE(service_->DestroyContainer(a, c).has_value());
  uint32_t seen = 0;
  EXPECT_EQ(::pread(opened->fd.get(), &seen, sizeof seen, static_cast<off_t>(bar0)), 4);
  EXPECT_EQ(seen, kMark);
}

}  // namespace
}  // namespace vfiod::service
