// Inside the test VM (real kernel, edu on vfio-pci): the kernel wants edu
// back while a non-root client holds it. The test writes edu's address to its
// driver's unbind in sysfs (a real unbind, which blocks in the kernel until
// every fd of the device is closed); vfio-pci signals the request IRQ vfiod
// armed, vfiod sends the client device.release_requested and, after the grace
// period (1 s here), revokes the container: unmapped, vfiod's fds closed,
// status back to baseline, device.revoked sent.
//  - A client that cooperates (the client library's DeviceReleaser closes
//    its device fd and unmaps its BAR on the request): the unbind completes.
//  - A client that ignores it: vfiod's own fds of the device are gone and its
//    DMA no longer reaches memory (an edu DMA to the old IOVA leaves the
//    memory untouched); the unbind completes once the client exits.
// Edu is bound back to vfio-pci after each case.
#include <gtest/gtest.h>
#include <sys/mman.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <optional>
#include <thread>

#include "client/release.h"
#include "daemon_harness.h"
#include "edu_bar.h"
#include "forked_client.h"
#include "release_helpers.h"

namespace vfiod::itest {
namespace {

constexpr uid_t kClient = 1004;
constexpr uint32_t kLen = 2048;

/// vfiod's fds on VFIO objects (/dev/vfio/vfio, /dev/vfio/<group>,
/// anon_inode:[vfio-device]), by target.
std::vector<std::string> VfioFdsOf(pid_t pid) {
  std::vector<std::string> out;
  for (const auto& entry : fs::directory_iterator("/proc/" + std::to_string(pid) + "/fd")) {
    std::error_code ec;
    const std::string target = fs::read_symlink(entry.path(), ec).string();
    if (target.starts_with("/dev/vfio/") || target == "anon_inode:[vfio-device]") {
      out.push_back(target);
    }
  }
  return out;
}

/// What both clients do first: a container with edu, its device fd, 1 MiB
/// of DMA memory below edu's 28-bit mask, and an edu round trip through it.
struct Session {
  json container;
  uint64_t mapping = 0;
  uint64_t iova = 0;
  UniqueFd device;
  UniqueFd memfd;
  uint8_t* mem = nullptr;

  std::string Start(client::Client& c, const std::string& bdf) {
    auto made = c.Call("container.create", {{"devices", {bdf}}});
    if (!made) {
      return "container.create: " + made.error().Describe();
    }
    container = made->result["container"];
    auto dev = c.Call("device.open", {{"container", container}, {"bdf", bdf}});
    if (!dev || dev->fds.size() != 1) {
      return "device.open failed";
    }
    device = std::move(dev->fds[0]);
    auto buf = c.Call(
        "dma.alloc",
        {{"container", container}, {"size", 1 << 20}, {"backing", "4k"}, {"dma_mask_bits", 28}});
    if (!buf || buf->fds.size() != 1) {
      return "dma.alloc failed";
    }
    mapping = buf->result["mapping"];
    iova = buf->result["iova"];
    memfd = std::move(buf->fds[0]);
    void* m = ::mmap(nullptr, 1 << 20, PROT_READ | PROT_WRITE, MAP_SHARED, memfd.get(), 0);
    mem = m == MAP_FAILED ? nullptr : static_cast<uint8_t*>(m);
    return mem == nullptr ? "mmap of the DMA buffer failed" : "";
  }
};

class VmReleaseTest : public ::testing::Test {
 protected:
  void SetUp() override {
    edu_ = std::getenv("VFIOD_EDU_BDF") != nullptr ? std::getenv("VFIOD_EDU_BDF") : "";
    if (!InVm() || edu_.empty()) {
      GTEST_SKIP() << "runs inside the test VM (tests/vm/vm_run.sh)";
    }
    if (::geteuid() != 0) {
      GTEST_SKIP() << "needs root to start vfiod, unbind devices and run clients as other uids";
    }
    json policy = {{"rules", json::array({{{"users", json::array({kClient})},
                                           {"devices", json::array({edu_})}}})}};
    daemon_ = std::make_unique<Daemon>(policy, "1G", Launch::kDirect, json::object(),
                                       json{{"reset", {{"without_reset", "hand_over"}}},
                                            {"device", {{"release_grace_seconds", 1}}}});
    root_ = std::make_unique<client::Client>(daemon_->Connect());
  }
  json Status() { return root_->Call("status")->result; }
  /// Status once the client's container is gone.
  json Revoked() {
    return AwaitStatus([&] { return Status(); },
                       [](const json& s) { return s["containers"] == 0; });
  }

  std::string edu_;
  std::unique_ptr<Daemon> daemon_;
  std::unique_ptr<client::Client> root_;
};

TEST_F(VmReleaseTest, ACooperatingClientLetsGoAndTheUnbindCompletes) {
  ForkedClient user(
      daemon_->socket(),
      [&](client::Client& c, const ForkedClient::Signal& signal) {
        Session s;
        std::optional<EduDevice> edu(std::in_place);
        std::string f = s.Start(c, edu_);
        f += f.empty() ? edu->Open(s.device.get()) : "";
        f += f.empty() ? edu->RoundTrip(s.mem, s.iova, kLen, 5) : "";
        // The library closes the fd on the request; the BAR mmap goes first.
        client::DeviceReleaser releaser([&](const client::ReleaseNotice&) { edu.reset(); });
        releaser.Keep(edu_, std::move(s.device));
        c.OnNotification(releaser.Handler());
        if (!f.empty()) {
          std::fprintf(stderr, "client: %s\n", f.c_str());
          return 2;
        }
        signal('d');
        auto asked = AwaitNotice(c, releaser, false);
        if (!asked || asked->bdf != edu_ || asked->grace_ms != 1000 || releaser.fd(edu_) != -1 ||
            edu) {
          return 3;
        }
        signal('r');
        auto gone = AwaitNotice(c, releaser, true);
        if (!gone || gone->container != s.container.get<uint64_t>() ||
            gone->mappings != std::vector<uint64_t>{s.mapping} || gone->unmapped_bytes != 1 << 20) {
          return 4;
        }
        signal('v');
        return 0;
      },
      static_cast<int>(kClient));
  ASSERT_TRUE(user.started());
  ASSERT_EQ(user.Next(), 'd') << "the client failed to use edu (see its stderr)";
  EXPECT_EQ(Status()["locked_bytes"], 1 << 20);

  Unbind unbind(edu_);
  ASSERT_EQ(user.Next(), 'r') << "no device.release_requested, or the fd was not closed";
  ASSERT_EQ(user.Next(), 'v') << "no device.revoked naming the client's mapping";
  json after = Revoked();
  EXPECT_EQ(after["containers"], 0);
  EXPECT_EQ(after["mappings"], 0);
  EXPECT_EQ(after["locked_bytes"], 0);
  EXPECT_EQ(unbind.Await(), "");
  EXPECT_TRUE(AwaitStatus([&] { return Status(); },
                          [](const json& s) { return s["lingering"].empty(); })["lingering"]
                  .empty());
  EXPECT_EQ(VfioFdsOf(daemon_->pid()), std::vector<std::string>());
  user.Kill();
  EXPECT_TRUE(BindBack(edu_));
}

TEST_F(VmReleaseTest, AClientThatIgnoresItLosesItsDmaAndTheUnbindWaitsForItsExit) {
  ForkedClient user(
      daemon_->socket(),
      [&](client::Client& c, const ForkedClient::Signal& signal) {
        static Session s;  // stays open in this process until it is killed
        static EduDevice edu;
        std::string f = s.Start(c, edu_);
        f += f.empty() ? edu.Open(s.device.get()) : "";
        f += f.empty() ? edu.RoundTrip(s.mem, s.iova, kLen, 9) : "";
        if (!f.empty()) {
          std::fprintf(stderr, "client: %s\n", f.c_str());
          return 2;
        }
        signal('d');
        client::DeviceReleaser notices;  // keeps no fd: only collects the notices
        c.OnNotification(notices.Handler());
        if (!AwaitNotice(c, notices, true)) {
          return 3;
        }
        signal('v');
        // The same transfer as before, device -> RAM at the old IOVA: the
        // IOMMU has nothing mapped there any more, so the memory stays zero.
        std::memset(s.mem + 8192, 0, kLen);
        (void)edu.bar().Dma(kEduBuffer, s.iova + 8192, kLen, true);
        const bool untouched =
            std::all_of(s.mem + 8192, s.mem + 8192 + kLen, [](uint8_t b) { return b == 0; });
        signal(untouched ? 'b' : 'x');
        return 0;  // holds the device fd and the BAR mmap until killed
      },
      static_cast<int>(kClient));
  ASSERT_TRUE(user.started());
  ASSERT_EQ(user.Next(), 'd') << "the client failed to use edu (see its stderr)";
  EXPECT_EQ(VfioFdsOf(daemon_->pid()).size(), 3u);  // container, group, device

  Unbind unbind(edu_);
  ASSERT_EQ(user.Next(), 'v') << "no device.revoked";
  EXPECT_EQ(user.Next(), 'b') << "an edu DMA to the revoked IOVA reached the client's memory";
  json after = Revoked();
  EXPECT_EQ(after["mappings"], 0);
  EXPECT_EQ(after["locked_bytes"], 0);
  ASSERT_EQ(after["lingering"].size(), 1u) << after.dump();  // the client's fd holds the group
  EXPECT_EQ(after["lingering"][0]["holders"], json::array({kClient}));
  EXPECT_EQ(VfioFdsOf(daemon_->pid()), std::vector<std::string>());
  EXPECT_FALSE(unbind.done());  // the kernel waits for the client's fd

  user.Kill();
  EXPECT_EQ(unbind.Await(), "");
  EXPECT_TRUE(AwaitStatus([&] { return Status(); },
                          [](const json& s) { return s["lingering"].empty(); })["lingering"]
                  .empty());
  EXPECT_TRUE(BindBack(edu_));
  EXPECT_EQ(daemon_->Stop(), 0);
}

}  // namespace
}  // namespace vfiod::itest
