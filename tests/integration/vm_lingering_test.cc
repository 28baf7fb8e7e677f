// Inside the test VM (real kernel, edu on vfio-pci): a device fd vfiod handed
// out outlives its container. The holder (one container of quota) opens edu,
// proves it with a DMA, destroys its container and keeps the fd. While it
// does, the kernel refuses to open the group again (EBUSY), and vfiod must
// say so: the group stays held and charged to the holder, status lists it
// as lingering with its holder, another user's container.create and root's
// device.unbind are refused at once with EBUSY naming the holder (Linux would
// block the unbind until the fd closes). Once the holder's process is gone
// everything is back to baseline, the next owner drives an edu DMA through
// the same device, and the unbind goes through (and edu is bound back).
#include <gtest/gtest.h>
#include <sys/mman.h>

#include "as_user.h"
#include "daemon_harness.h"
#include "edu_bar.h"
#include "forked_client.h"
#include "proto/errors.h"

namespace vfiod::itest {
namespace {

constexpr uid_t kHolder = 1003;  ///< quota: one container
constexpr uid_t kNext = 1002;

/// container.create on edu, device.open, dma.alloc (1 MiB, below edu's
/// 28-bit DMA mask), an edu round trip through that memory, then
/// container.destroy. The device fd is kept in `*device` when given (else
/// closed). "" or what went wrong.
std::string UseEdu(client::Client& c, const std::string& bdf, UniqueFd* device, uint8_t seed) {
  auto made = c.Call("container.create", {{"devices", {bdf}}});
  if (!made) {
    return "container.create: " + made.error().Describe();
  }
  const json id = made->result["container"];
  auto dev = c.Call("device.open", {{"container", id}, {"bdf", bdf}});
  if (!dev || dev->fds.size() != 1) {
    return "device.open: " + (dev ? std::string("no fd") : dev.error().Describe());
  }
  auto buf =
      c.Call("dma.alloc",
             {{"container", id}, {"size", 1 << 20}, {"backing", "4k"}, {"dma_mask_bits", 28}});
  if (!buf || buf->fds.size() != 1) {
    return "dma.alloc: " + (buf ? std::string("no fd") : buf.error().Describe());
  }
  std::string f;
  {
    EduDevice edu;
    f += edu.Open(dev->fds[0].get());
    void* mem = ::mmap(nullptr, 1 << 20, PROT_READ | PROT_WRITE, MAP_SHARED, buf->fds[0].get(), 0);
    if (mem == MAP_FAILED) {
      return f + "mmap of the DMA buffer failed; ";
    }
    if (f.empty()) {
      f += edu.RoundTrip(static_cast<uint8_t*>(mem), buf->result["iova"], 2048, seed);
    }
    ::munmap(mem, 1 << 20);
  }
  if (auto gone = c.Call("container.destroy", {{"container", id}}); !gone) {
    f += "container.destroy: " + gone.error().Describe();
  }
  if (device != nullptr) {
    *device = std::move(dev->fds[0]);
  }
  return f;
}

/// A call as `uid` on a connection of its own: its error code (0: success)
/// and detail.
std::pair<int, std::string> CallAs(const std::string& socket, uid_t uid, const std::string& method,
                                   const json& params) {
  std::string text = RunAs(uid, uid, [&]() -> std::string {
    auto c = client::Client::Connect(socket);
    if (!c) {
      return "-1 connect: " + c.error().message();
    }
    auto r = c->Call(method, params);
    return std::to_string(CodeOf(r)) + " " + (r ? r->result.dump() : DetailOf(r));
  });
  const size_t space = text.find(' ');
  const std::string code = text.substr(0, space);
  const bool numeric = !code.empty() && code.find_first_not_of("-0123456789") == std::string::npos;
  return {numeric ? std::stoi(code) : -1, space == std::string::npos ? text : text.substr(space)};
}

TEST(VmLingeringTest, AKeptDeviceFdHoldsItsGroupUntilClosedAndUnbindNeverBlocks) {
  const char* edu = std::getenv("VFIOD_EDU_BDF");
  const char* ivshmem = std::getenv("VFIOD_IVSHMEM_BDF");
  if (!InVm() || edu == nullptr || ivshmem == nullptr) {
    GTEST_SKIP() << "runs inside the test VM (tests/vm/vm_run.sh)";
  }
  if (::geteuid() != 0) {
    GTEST_SKIP() << "needs root to start vfiod and run clients as other uids";
  }
  const json devices = json::array({edu, ivshmem});
  json policy = {{"rules", json::array({{{"users", json::array({kHolder})},
                                         {"devices", devices},
                                         {"quota", {{"containers", 1}}}},
                                        {{"users", json::array({kNext})}, {"devices", devices}}})}};
  // Edu has no reset in the VM: the next owner gets it only when the config
  // lets a device change hands without one (reset between owners is not
  // what this test is about; vm_owner_reset is).
  Daemon daemon(policy, "1G", Launch::kDirect, json::object(),
                json{{"reset", {{"without_reset", "hand_over"}}}});
  client::Client root = daemon.Connect();
  auto quiet_status = [&] {
    return AwaitStatus([&] { return root.Call("status")->result; },
                       [](const json& s) { return s["clients"] == 1; });
  };
  const json group = root.Call("device.info", {{"bdf", edu}})->result["iommu_group"];
  ASSERT_TRUE(group.is_number()) << "edu has no IOMMU group";
  const std::string holder_uid = "uid " + std::to_string(kHolder);

  // The holder drives edu, destroys its container and keeps the device fd.
  ForkedClient holder(
      daemon.socket(),
      [&](client::Client& c, const ForkedClient::Signal& signal) {
        static UniqueFd kept;  // stays open in this process until it is killed
        std::string f = UseEdu(c, edu, &kept, 3);
        if (!f.empty() || !kept) {
          std::fprintf(stderr, "holder: %s\n", f.c_str());
          return 2;
        }
        signal('d');
        return 0;
      },
      static_cast<int>(kHolder));
  ASSERT_TRUE(holder.started());
  ASSERT_EQ(holder.Next(), 'd') << "the holder failed to use edu (see its stderr)";

  // Held: status shows the group lingering with its holder; its DMA memory
  // is unmapped and uncharged, its container count is not.
  json held = quiet_status();
  EXPECT_EQ(held["kernel"], "linux");
  EXPECT_EQ(held["containers"], 0);
  EXPECT_EQ(held["locked_bytes"], 0);
  ASSERT_EQ(held["lingering"].size(), 1u) << held.dump();
  EXPECT_EQ(held["lingering"][0]["holders"], json::array({kHolder}));
  EXPECT_EQ(held["lingering"][0]["owner_uid"], kHolder);
  EXPECT_EQ(held["lingering"][0]["groups"], json::array({group}));
  auto [busy, busy_detail] =
      CallAs(daemon.socket(), kNext, "container.create", {{"devices", {edu}}});
  EXPECT_EQ(busy, wire::kBusy) << busy_detail;
  EXPECT_NE(busy_detail.find(holder_uid), std::string::npos) << busy_detail;
  auto unbind = root.Call("device.unbind", {{"bdf", edu}});  // Linux would block: refused
  EXPECT_EQ(CodeOf(unbind), wire::kBusy);
  EXPECT_NE(DetailOf(unbind).find(holder_uid), std::string::npos) << DetailOf(unbind);
  auto [quota, quota_detail] =
      CallAs(daemon.socket(), kHolder, "container.create", {{"devices", {ivshmem}}});
  EXPECT_EQ(quota, wire::kQuotaExceeded) << quota_detail;
  auto [mine, mine_status] = CallAs(daemon.socket(), kHolder, "status", json::object());
  EXPECT_EQ(mine, 0) << mine_status;
  EXPECT_EQ(json::parse(mine_status, nullptr, false)["lingering"].size(), 1u) << mine_status;
  auto [theirs, their_status] = CallAs(daemon.socket(), kNext, "status", json::object());
  EXPECT_EQ(json::parse(their_status, nullptr, false)["lingering"].size(), 0u) << their_status;

  // The fd closes with the holder's process: back to baseline.
  holder.Kill();
  json after = AwaitStatus([&] { return root.Call("status")->result; },
                           [](const json& s) { return s["lingering"].empty(); });
  EXPECT_TRUE(after["lingering"].empty()) << after.dump();
  EXPECT_EQ(after["containers"], 0);
  EXPECT_EQ(after["locked_bytes"], 0);
  std::string holder_again = RunAs(kHolder, kHolder, [&]() -> std::string {
    auto c = client::Client::Connect(daemon.socket());
    if (!c) {
      return "connect failed";
    }
    auto made = c->Call("container.create", {{"devices", {ivshmem}}});
    if (!made) {
      return "the holder's container quota did not come back: " + made.error().Describe();
    }
    return c->Call("container.destroy", {{"container", made->result["container"]}})
               ? ""
               : "container.destroy failed";
  });
  EXPECT_EQ(holder_again, "");
  // The next owner gets edu and its DMA works.
  std::string next = RunAs(kNext, kNext, [&]() -> std::string {
    auto c = client::Client::Connect(daemon.socket());
    return c ? UseEdu(*c, edu, nullptr, 77) : "connect failed";
  });
  EXPECT_EQ(next, "");
  json baseline = quiet_status();
  EXPECT_TRUE(baseline["lingering"].empty()) << baseline.dump();
  EXPECT_EQ(baseline["containers"], 0);
  EXPECT_EQ(baseline["locked_bytes"], 0);
  // Nothing holds edu now: unbind goes through, and binding it back works.
  auto unbound = root.Call("device.unbind", {{"bdf", edu}});
  EXPECT_TRUE(unbound.has_value()) << DetailOf(unbound);
  auto bound = root.Call("device.bind", {{"bdf", edu}});
  EXPECT_TRUE(bound.has_value()) << DetailOf(bound);
  EXPECT_EQ(daemon.Stop(), 0);
}

}  // namespace
}  // namespace vfiod::itest
