// device.reset in the service: the access rule, the method chosen, the
// groups a hot reset needs.
#include <gtest/gtest.h>

#include "model_service.h"

namespace vfiod::service {
namespace {

using model_service::EduConfig;
using model_service::kEdu;
using model_service::kIvshmem;

constexpr uid_t kUser = 1000;

/// Edu and ivshmem with no function reset, on the root bus (`bus` empty) or
/// together behind one bridge.
kernel::ModelTopology Without(const char* bus) {
  kernel::ModelTopology t = model_service::Topology();
  for (auto& g : t.groups) {
    g.devices[0].can_reset = false;
    g.devices[0].reset_bus = bus;
  }
  return t;
}

class ResetServiceTest : public model_service::ModelServiceTest {
 protected:
  explicit ResetServiceTest(kernel::ModelTopology t = model_service::Topology())
      : ModelServiceTest(std::move(t)) {
    Start(EduConfig(kUser, Quota{.locked_bytes = 4 << 20, .mappings = 2, .containers = 2}));
  }
  ContainerId Create(const Caller& who, const std::vector<std::string>& bdfs) {
    auto c = service_->CreateContainer(who, bdfs, "");
    EXPECT_TRUE(c.has_value()) << c.error().error.message();
    return c ? c->id : 0;
  }
};

TEST_F(ResetServiceTest, AFunctionResetWhenTheDeviceOffersOne) {
  Caller a = Open(kUser);
  Create(a, {kEdu});
  auto done = service_->ResetDevice(a, kEdu);
  ASSERT_TRUE(done.has_value()) << done.error().error.message();
  EXPECT_EQ(*done, ResetMethod::kFunction);
}

TEST_F(ResetServiceTest, OnlyThroughAContainerTheCallerMayUse) {
  Caller a = Open(kUser);
  EXPECT_EQ(service_->ResetDevice(a, kEdu).error().kind, ErrorKind::kNotFound);  // no container
  Caller root = Open(0);
  Create(root, {kEdu});
  EXPECT_EQ(service_->ResetDevice(a, kEdu).error().kind, ErrorKind::kNotFound);        // root's
  EXPECT_EQ(service_->ResetDevice(a, kIvshmem).error().kind, ErrorKind::kPermission);  // policy
  EXPECT_TRUE(service_->ResetDevice(root, kEdu).has_value());
}

class RootBusResetTest : public ResetServiceTest {
 protected:
  RootBusResetTest() : ResetServiceTest(Without("")) {}
};

TEST_F(RootBusResetTest, NoResetAtAllIsRefusedClearly) {
  Caller a = Open(kUser);
  Create(a, {kEdu});
  auto done = service_->ResetDevice(a, kEdu);
  ASSERT_FALSE(done.has_value());
  EXPECT_EQ(done.error().kind, ErrorKind::kInvalidParams);
  EXPECT_EQ(done.error().error.code, ENOTTY);
}

class BusResetTest : public ResetServiceTest {
 protected:
  BusResetTest() : ResetServiceTest(Without("01")) {}
};

TEST_F(BusResetTest, AHotResetNeedsEveryAffectedGroupInTheContainer) {
  Caller root = Open(0);
  Create(root, {kEdu});
  auto refused = service_->ResetDevice(root, kEdu);
  ASSERT_FALSE(refused.has_value());
  EXPECT_EQ(refused.error().kind, ErrorKind::kPermission);
  EXPECT_NE(refused.error().error.detail.find("group 4"), std::string::npos)
      << refused.error().error.detail;
}

// (What the hot reset does to the device is the model's: model_hot_reset_test.)
TEST_F(BusResetTest, AHotResetWithEveryGroupInTheContainer) {
  Caller root = Open(0);
  Create(root, {kEdu, kIvshmem});
  auto done = service_->ResetDevice(root, kEdu);
  ASSERT_TRUE(done.has_value()) << done.error().error.message();
  EXPECT_EQ(*done, ResetMethod::kHot);
}

}  // namespace
}  // namespace vfiod::service
