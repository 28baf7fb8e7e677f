// Binding through the daemon drives the model kernel: on `kernel: "model"`
// the fake sysfs tree's bind/unbind reaches ModelKernel::SetDriver, so a
// device taken off vfio-pci cannot be opened through VFIO, and binding it
// back makes it work again, as on Linux (the rules themselves are checked
// against the real kernel by tests/conformance/conformance_binding_test.cc).
#include <gtest/gtest.h>

#include "model_daemon_fixture.h"
#include "proto/errors.h"

namespace vfiod::itest {
namespace {

constexpr const char* kLpc = "0000:00:1f.0";  // lpc_ich, in kNonViable's group

class ModelBindingTest : public ModelDaemonTest {
 protected:
  /// errno_name of a failed call's data ("" when absent).
  static std::string ErrnoNameOf(const client::CallResult& r) {
    if (r || !r.error().data.is_object() || !r.error().data.contains("errno_name")) {
      return "";
    }
    return r.error().data["errno_name"].get<std::string>();
  }
};

TEST_F(ModelBindingTest, UnboundDeviceCannotBeOpenedUntilBoundAgain) {
  // 00:1f.0 leaves lpc_ich: with no driver it no longer blocks its group.
  auto unbind = Call("device.unbind", {{"bdf", kLpc}});
  ASSERT_CALL_OK(unbind);
  EXPECT_EQ(daemon_->tree()->DriverOf(kLpc), "");
  auto created = Call("container.create", {{"devices", {kNonViable}}});
  ASSERT_CALL_OK(created);
  const uint64_t id = created->result["container"];
  auto smbus = Call("device.open", {{"container", id}, {"bdf", kNonViable}});
  ASSERT_CALL_OK(smbus);

  // In the group, in the container, but not on vfio-pci: VFIO has no such device.
  auto off = Call("device.open", {{"container", id}, {"bdf", kLpc}});
  EXPECT_EQ(CodeOf(off), wire::kKernelError) << DetailOf(off);
  EXPECT_EQ(ErrnoNameOf(off), "ENODEV") << DetailOf(off);

  auto bind = Call("device.bind", {{"bdf", kLpc}});
  ASSERT_CALL_OK(bind);
  EXPECT_EQ(bind->result["driver"], "vfio-pci");
  auto on = Call("device.open", {{"container", id}, {"bdf", kLpc}});
  ASSERT_CALL_OK(on);
  EXPECT_EQ(on->fds.size(), 1u);

  // Its group is held by a container: the daemon refuses to unbind it.
  EXPECT_EQ(CodeOf(Call("device.unbind", {{"bdf", kLpc}})), wire::kBusy);
  EXPECT_EQ(daemon_->tree()->DriverOf(kLpc), "vfio-pci");
  ASSERT_CALL_OK(Call("container.destroy", {{"container", id}}));
}

TEST_F(ModelBindingTest, GroupWithNoDeviceOnVfioPciCannotBeUsedUntilOneIsBound) {
  ASSERT_CALL_OK(Call("device.unbind", {{"bdf", kEdu}}));
  EXPECT_EQ(daemon_->tree()->DriverOf(kEdu), "");
  // vfio removes the group file with the group's last vfio-pci device.
  auto refused = Call("container.create", {{"devices", {kEdu}}});
  EXPECT_EQ(CodeOf(refused), wire::kKernelError) << DetailOf(refused);
  EXPECT_EQ(ErrnoNameOf(refused), "ENOENT") << DetailOf(refused);

  ASSERT_CALL_OK(Call("device.bind", {{"bdf", kEdu}}));
  auto created = Call("container.create", {{"devices", {kEdu}}});
  ASSERT_CALL_OK(created);
  auto dev = Call("device.open", {{"container", created->result["container"]}, {"bdf", kEdu}});
  ASSERT_CALL_OK(dev);
  EXPECT_EQ(dev->fds.size(), 1u);
}

TEST_F(ModelBindingTest, DeviceOfAHostDriverBecomesUsableWhenBound) {
  // 00:05.0 is on e1000, alone in its group: there is no group file.
  auto refused = Call("container.create", {{"devices", {kUnbound}}});
  EXPECT_EQ(CodeOf(refused), wire::kKernelError) << DetailOf(refused);
  EXPECT_EQ(ErrnoNameOf(refused), "ENOENT") << DetailOf(refused);
  ASSERT_CALL_OK(Call("device.bind", {{"bdf", kUnbound}}));
  auto created = Call("container.create", {{"devices", {kUnbound}}});
  ASSERT_CALL_OK(created);
  auto dev = Call("device.open", {{"container", created->result["container"]}, {"bdf", kUnbound}});
  ASSERT_CALL_OK(dev);
  EXPECT_EQ(dev->fds.size(), 1u);
}

}  // namespace
}  // namespace vfiod::itest
