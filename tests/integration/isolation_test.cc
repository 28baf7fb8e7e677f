// Policy, quotas and isolation between clients, against the real vfiod
// binary: another uid is refused what the policy does not grant, cannot see
// or touch root's objects, a client killed mid-request leaves nothing behind,
// and ping is answered while another client's map runs.
#include <gtest/gtest.h>

#include <thread>

#include "as_user.h"
#include "daemon_harness.h"
#include "forked_client.h"
#include "proto/errors.h"

namespace vfiod::itest {
namespace {

class IsolationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (InVm()) {
      GTEST_SKIP() << "model-kernel scenario; the VM runs VmEduTest";
    }
    daemon_ = std::make_unique<Daemon>();
    observer_ = std::make_unique<client::Client>(daemon_->Connect());
  }
  void TearDown() override {
    if (daemon_) {
      observer_.reset();
      EXPECT_EQ(daemon_->Stop(), 0) << ReadAll(daemon_->log_path());
    }
  }
  /// Status through one long-lived connection (which counts as a client).
  json Status() {
    auto r = observer_->Call("status");
    return r ? r->result : json();
  }
  /// Waits (bounded) until only `clients` sessions remain: close hooks run
  /// asynchronously after a disconnect. Returns the last status seen.
  json StatusOnceClientsAre(uint64_t clients) {
    json s;
    for (int i = 0; i < 1000; ++i) {
      s = Status();
      if (s["clients"] == clients + 1) {  // +1: the observer
        return s;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return s;
  }
  std::unique_ptr<Daemon> daemon_;
  std::unique_ptr<client::Client> observer_;
};

/// Expect `r` to fail with `code`; describes the mismatch otherwise.
std::string Expect(const char* what, const client::CallResult& r, int code) {
  if (CodeOf(r) == code) {
    return "";
  }
  return std::string(what) + ": expected code " + std::to_string(code) + ", got " +
         (r ? "success " + r->result.dump() : r.error().Describe()) + "; ";
}

TEST_F(IsolationTest, PolicyAndQuotaForAnotherUser) {
  // Root makes a container the other user must not see.
  client::Client root = daemon_->Connect();
  auto mine = root.Call("container.create", {{"devices", {kIvshmem}}});
  ASSERT_CALL_OK(mine);
  uint64_t root_container = mine->result["container"];
  auto root_map =
      root.Call("dma.alloc", {{"container", root_container}, {"size", 4096}, {"backing", "4k"}});
  ASSERT_CALL_OK(root_map);
  uint64_t root_mapping = root_map->result["mapping"];

  std::string failures = RunAs(kNobody, kNobody, [&]() -> std::string {
    auto c = client::Client::Connect(daemon_->socket());
    if (!c) {
      return "connect: " + c.error().message();
    }
    std::string f;
    // Devices the rule does not list.
    f += Expect("ivshmem container", c->Call("container.create", {{"devices", {kIvshmem}}}),
                wire::kPermissionDenied);
    f += Expect("bind", c->Call("device.bind", {{"bdf", kEdu}}), wire::kPermissionDenied);
    f += Expect("root-only unbind", c->Call("device.unbind", {{"bdf", kEdu}}),
                wire::kPermissionDenied);
    auto list = c->Call("device.list");
    if (!list) {
      f += "device.list failed; ";
    } else {
      for (const auto& d : list->result) {
        if (d["permitted"].get<bool>() != (d["bdf"] == kEdu)) {
          f += "permitted wrong for " + d["bdf"].get<std::string>() + "; ";
        }
      }
    }
    // Root's objects are invisible.
    f += Expect("root's container", c->Call("container.info", {{"container", root_container}}),
                wire::kNotFound);
    f +=
        Expect("root's mapping", c->Call("dma.free", {{"mapping", root_mapping}}), wire::kNotFound);
    f += Expect("destroy root's", c->Call("container.destroy", {{"container", root_container}}),
                wire::kNotFound);
    auto containers = c->Call("container.list");
    if (!containers || !containers->result.empty()) {
      f += "container.list shows others' containers; ";
    }
    // What the rule grants: edu, 1 container, 2 mappings, 4 MiB.
    auto own = c->Call("container.create", {{"devices", {kEdu}}});
    if (!own) {
      return f + "edu container refused: " + own.error().Describe();
    }
    uint64_t id = own->result["container"];
    f += Expect("second container", c->Call("container.create", {{"devices", {kEdu}}}),
                wire::kQuotaExceeded);
    f += Expect("8 MiB alloc",
                c->Call("dma.alloc", {{"container", id}, {"size", 8 << 20}, {"backing", "4k"}}),
                wire::kQuotaExceeded);
    for (int i = 0; i < 2; ++i) {
      auto ok = c->Call("dma.alloc", {{"container", id}, {"size", 1 << 20}, {"backing", "4k"}});
      if (!ok) {
        f += "alloc within quota failed: " + ok.error().Describe() + "; ";
      }
    }
    f += Expect("third mapping",
                c->Call("dma.alloc", {{"container", id}, {"size", 4096}, {"backing", "4k"}}),
                wire::kQuotaExceeded);
    return f;
  });
  EXPECT_EQ(failures, "");
  // The child is gone: its container and mappings went with it; root's stay.
  // The session goes first, its objects a moment later (close hook): wait,
  // bounded, for them to be released.
  json status;
  for (int i = 0; i < 2000; ++i) {
    status = StatusOnceClientsAre(1);
    if (status["containers"] == 1 && status["mappings"] == 1) {
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(status["containers"], 1);
  EXPECT_EQ(status["mappings"], 1);
  EXPECT_EQ(status["locked_bytes"], 4096);
  EXPECT_TRUE(root.Call("container.info", {{"container", root_container}}).has_value());
}

TEST_F(IsolationTest, KilledClientLeavesNothingBehind) {
  client::Client bystander = daemon_->Connect();
  auto keep = bystander.Call("container.create", {{"devices", {kIvshmem}}});
  ASSERT_CALL_OK(keep);
  auto kept = bystander.Call(
      "dma.alloc", {{"container", keep->result["container"]}, {"size", 4096}, {"backing", "4k"}});
  ASSERT_CALL_OK(kept);
  json before = Status();

  ForkedClient killed(daemon_->socket(), [](client::Client& c, const ForkedClient::Signal& signal) {
    auto made = c.Call("container.create", {{"devices", {kEdu}}});
    if (!made) {
      return 2;
    }
    uint64_t id = made->result["container"];
    (void)c.Call("dma.alloc", {{"container", id}, {"size", 1 << 20}, {"backing", "4k"}});
    // Tell the parent, then start a long map (64 chunks) and get killed in it.
    c.OnNotification([&](const std::string&, const json&) { signal('m'); });
    signal('r');
    (void)c.Call("dma.alloc",
                 {{"container", id}, {"size", 128 << 20}, {"backing", "4k"}, {"progress", true}});
    return 0;
  });
  ASSERT_TRUE(killed.started());
  ASSERT_EQ(killed.Next(), 'r');
  (void)killed.Next();  // the first progress report (or the end of the pipe)
  killed.Kill();

  // Release is asynchronous (the close hook runs once the killed client's map
  // has finished): wait, bounded, for the figures to settle back.
  json after = AwaitStatus([&] { return StatusOnceClientsAre(1); },
                           [&](const json& s) {
                             return s["mappings"] == before["mappings"] &&
                                    s["containers"] == before["containers"];
                           });
  EXPECT_EQ(after["containers"], before["containers"]);
  EXPECT_EQ(after["mappings"], before["mappings"]);
  EXPECT_EQ(after["locked_bytes"], before["locked_bytes"]);
  EXPECT_EQ(after["dma_entries"], before["dma_entries"]);
  // The bystander's objects are untouched and its connection still works.
  auto info = bystander.Call("container.info", {{"container", keep->result["container"]}});
  ASSERT_CALL_OK(info);
  EXPECT_EQ(info->result["mappings"].size(), 1u);
  // The killed client's group is free again.
  auto again = bystander.Call("container.create", {{"devices", {kEdu}}});
  EXPECT_TRUE(again.has_value()) << again.error().Describe();
}

TEST_F(IsolationTest, PingIsAnsweredWhileAnotherClientMaps) {
  client::Client mapper = daemon_->Connect();
  client::Client pinger = daemon_->Connect();
  auto c = mapper.Call("container.create", {{"devices", {kEdu}}});
  ASSERT_CALL_OK(c);
  int pings_during_map = 0;
  mapper.OnNotification([&](const std::string& method, const json&) {
    // The mapper's request is still outstanding here: its reply comes after
    // every progress notification on this connection.
    if (method == "dma.progress" && pings_during_map == 0) {
      auto pong = pinger.Call("ping");
      pings_during_map += pong.has_value() ? 1 : 0;
    }
  });
  auto big = mapper.Call("dma.alloc", {{"container", c->result["container"]},
                                       {"size", 64 << 20},
                                       {"backing", "4k"},
                                       {"progress", true}});
  ASSERT_CALL_OK(big);
  EXPECT_EQ(pings_during_map, 1);
}

}  // namespace
}  // namespace vfiod::itest
