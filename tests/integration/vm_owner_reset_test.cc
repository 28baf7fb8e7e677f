// Inside the test VM (real kernel): reset between owners, proven with a
// register of QEMU's NVMe controller (1b36:0010, FLR: VFIO_DEVICE_FLAGS_RESET).
// User A writes a recognisable value into CC (BAR0 + 0x14, the Controller
// Configuration; with CC.EN = 0 QEMU keeps what is written, and a function
// level reset clears it) and lets go; user B is then handed the device by
// device.open and reads CC back: 0, and the reply says "function". The
// controls, so the test can fail: A again (same uid) reads its own value
// back (no reset, the reply says "not_needed"), and with reset.between_owners
// off B reads A's value. The container is A's, named and shared with B, so
// vfiod keeps the device open all along: the kernel's own resets (when a
// device is first opened or last closed) cannot be what clears it.
#include <gtest/gtest.h>

#include <cinttypes>
#include <optional>

#include "as_user.h"
#include "daemon_harness.h"
#include "kernel/kernel.h"
#include "kernel/vfio_api.h"

namespace vfiod::itest {
namespace {

constexpr uid_t kA = 1006;
constexpr uid_t kB = 1007;
constexpr uint32_t kVs = 0x08;  ///< NVMe Version
constexpr uint32_t kCc = 0x14;  ///< NVMe Controller Configuration
/// IOCQES 4, IOSQES 6, EN 0: what A leaves in CC.
constexpr uint32_t kLeft = 0x00460000;

/// What one user saw: device.open's "reset", VS, CC as handed over, CC after
/// the write (when asked to write), or the error.
struct Turn {
  std::string error;
  std::string reset;
  uint32_t vs = 0;
  uint32_t cc = 0;
  uint32_t cc_written = 0;
};

Turn Failed(std::string error) {
  Turn t;
  t.error = std::move(error);
  return t;
}

/// Reads (`write` unset) or writes a 32-bit register of BAR0 through the
/// device fd; "" or what went wrong.
std::string Reg(kernel::Kernel& k, int fd, uint64_t bar0, uint32_t reg, uint32_t* value,
                bool write) {
  auto done = write ? k.pwrite(fd, value, 4, static_cast<off_t>(bar0 + reg))
                    : k.pread(fd, value, 4, static_cast<off_t>(bar0 + reg));
  return done && *done == 4 ? "" : "BAR0 access at " + std::to_string(reg) + " failed; ";
}

/// As the current process (already the user): container "tenancy" of kA
/// (made, shared with kB, when `create`), device.open of `bdf`, VS and CC
/// read, and `write` written to CC and read back when set.
Turn UseNvme(const std::string& socket, const std::string& bdf, bool create,
             std::optional<uint32_t> write) {
  Turn t;
  auto c = client::Client::Connect(socket);
  if (!c) {
    return Failed("connect: " + c.error().message());
  }
  auto made =
      create ? c->Call("container.create",
                       {{"devices", {bdf}}, {"name", "tenancy"}, {"share_with", {{"users", {kB}}}}})
             : c->Call("container.attach", {{"name", "tenancy"}, {"owner", kA}});
  if (!made) {
    return Failed("container: " + made.error().Describe());
  }
  auto dev = c->Call("device.open", {{"container", made->result["container"]}, {"bdf", bdf}});
  if (!dev || dev->fds.size() != 1) {
    return Failed("device.open: " + (dev ? std::string("no fd") : dev.error().Describe()));
  }
  t.reset = dev->result.value("reset", "(none)");
  const int fd = dev->fds[0].get();
  auto k = kernel::MakeLinuxKernel();
  auto bar0 = kernel::GetRegionInfo(*k, fd, kernel::kPciBar0RegionIndex);
  auto cfg = kernel::GetRegionInfo(*k, fd, kernel::kPciConfigRegionIndex);
  if (!bar0 || !cfg) {
    return Failed("region info failed");
  }
  uint16_t command = 0;
  if (!k->pread(fd, &command, 2, static_cast<off_t>(cfg->offset + 4))) {
    return Failed("config read failed");
  }
  command |= 0x2;  // memory space: vfio-pci refuses BAR access without it
  if (!k->pwrite(fd, &command, 2, static_cast<off_t>(cfg->offset + 4))) {
    return Failed("config write failed");
  }
  t.error += Reg(*k, fd, bar0->offset, kVs, &t.vs, false);
  t.error += Reg(*k, fd, bar0->offset, kCc, &t.cc, false);
  if (write) {
    uint32_t v = *write;
    t.error += Reg(*k, fd, bar0->offset, kCc, &v, true);
    t.error += Reg(*k, fd, bar0->offset, kCc, &t.cc_written, false);
  }
  return t;
}

/// UseNvme as `uid` in a child process.
Turn TurnAs(const std::string& socket, uid_t uid, const std::string& bdf, bool create,
            std::optional<uint32_t> write = std::nullopt) {
  std::string text = RunAs(uid, uid, [&]() -> std::string {
    Turn t = UseNvme(socket, bdf, create, write);
    return json{{"error", t.error},
                {"reset", t.reset},
                {"vs", t.vs},
                {"cc", t.cc},
                {"cc_written", t.cc_written}}
        .dump();
  });
  json j = json::parse(text, nullptr, false);
  if (!j.is_object()) {
    return Failed("uid " + std::to_string(uid) + ": " + text);
  }
  return Turn{j["error"], j["reset"], j["vs"], j["cc"], j["cc_written"]};
}

std::string Hex(uint32_t v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%08" PRIx32, v);
  return buf;
}

class VmOwnerResetTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* nvme = std::getenv("VFIOD_NVME_BDF");
    if (!InVm() || nvme == nullptr) {
      GTEST_SKIP() << "runs inside the test VM (tests/vm/vm_run.sh)";
    }
    if (::geteuid() != 0) {
      GTEST_SKIP() << "needs root to start vfiod and run clients as other uids";
    }
    bdf_ = nvme;
  }
  json Policy() const {
    return {{"rules",
             json::array({{{"users", json::array({kA, kB})}, {"devices", json::array({bdf_})}}})}};
  }
  std::string bdf_;
};

TEST_F(VmOwnerResetTest, AnotherUserGetsTheNvmeControllerResetTheSameUserAsLeft) {
  Daemon daemon(Policy());
  Turn a = TurnAs(daemon.socket(), kA, bdf_, true, kLeft);
  ASSERT_EQ(a.error, "");
  std::printf("A: reset %s, VS %s, CC %s, CC after writing %s: %s\n", a.reset.c_str(),
              Hex(a.vs).c_str(), Hex(a.cc).c_str(), Hex(kLeft).c_str(), Hex(a.cc_written).c_str());
  ASSERT_NE(a.vs, 0u);  // BAR0 reads: an NVMe version, not 0 or all ones
  ASSERT_NE(a.vs, 0xffffffffu);
  ASSERT_EQ(a.cc_written, kLeft) << "the controller does not keep what is written to CC";

  Turn again = TurnAs(daemon.socket(), kA, bdf_, false);
  ASSERT_EQ(again.error, "");
  std::printf("A again: reset %s, CC %s\n", again.reset.c_str(), Hex(again.cc).c_str());
  EXPECT_EQ(again.reset, "not_needed");
  EXPECT_EQ(again.cc, kLeft) << "nothing was to clear A's value for A";

  Turn b = TurnAs(daemon.socket(), kB, bdf_, false);
  ASSERT_EQ(b.error, "");
  std::printf("B: reset %s, CC %s\n", b.reset.c_str(), Hex(b.cc).c_str());
  EXPECT_EQ(b.reset, "function");
  EXPECT_EQ(b.cc, 0u) << "B reads what A left";

  std::string gone = RunAs(kA, kA, [&]() -> std::string {
    auto c = client::Client::Connect(daemon.socket());
    if (!c) {
      return "connect failed";
    }
    auto made = c->Call("container.attach", {{"name", "tenancy"}});
    return made && c->Call("container.destroy", {{"container", made->result["container"]}})
               ? ""
               : "container.destroy failed";
  });
  EXPECT_EQ(gone, "");
  EXPECT_EQ(daemon.Stop(), 0);
}

TEST_F(VmOwnerResetTest, WithResetBetweenOwnersOffTheNextUserReadsWhatTheLastLeft) {
  Daemon daemon(Policy(), "2M", Launch::kDirect, json::object(),
                json{{"reset", {{"between_owners", false}}}});
  Turn a = TurnAs(daemon.socket(), kA, bdf_, true, kLeft);
  ASSERT_EQ(a.error, "");
  ASSERT_EQ(a.cc_written, kLeft);
  EXPECT_EQ(a.reset, "disabled");
  Turn b = TurnAs(daemon.socket(), kB, bdf_, false);
  ASSERT_EQ(b.error, "");
  std::printf("reset off, B: reset %s, CC %s\n", b.reset.c_str(), Hex(b.cc).c_str());
  EXPECT_EQ(b.reset, "disabled");
  EXPECT_EQ(b.cc, kLeft);
  EXPECT_EQ(daemon.Stop(), 0);
}

}  // namespace
}  // namespace vfiod::itest
