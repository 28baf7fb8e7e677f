// The server's scheduling of blocking work: close hooks do not queue behind
// client calls, and one connection's calls wait in their user's queue.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "gate.h"
#include "test_harness.h"

namespace vfiod::rpc {
namespace {

using nlohmann::json;
using testing::Eventually;
using testing::RawPeer;
using testing::RunningServer;

using testing::Gate;

class ServerFairness : public ::testing::Test {
 protected:
  MethodRegistry Registry() {
    MethodRegistry reg;
    EXPECT_TRUE(reg.Register(
        "ping", [](CallContext&, const json&) -> HandlerResult { return Reply(json("pong")); }));
    EXPECT_TRUE(reg.Register("slow",
                             [this](CallContext&, const json&) -> HandlerResult {
                               gate_.Wait();
                               return Reply(json("slow-done"));
                             },
                             {.blocking = true}));
    return reg;
  }
  std::vector<CloseHook> Hooks() {
    return {[this](ConnectionId, const PeerCredentials&) { ++closed_; }};
  }

  void Start(std::size_t workers) {
    server_ = std::make_unique<RunningServer>(registry_, ServerConfig{.worker_threads = workers},
                                              Hooks());
  }
  [[nodiscard]] const std::string& socket() const { return server_->socket_path(); }

  Gate gate_;
  std::atomic<int> closed_{0};
  MethodRegistry registry_ = Registry();
  std::unique_ptr<RunningServer> server_;  // last: stopped before the gate goes
};

TEST_F(ServerFairness, CloseHooksRunWhileEveryWorkerIsBlocked) {
  Start(1);  // a single blocked call holds every worker there is
  RawPeer busy(socket());
  busy.WriteJson(wire::MakeRequest("slow", nullptr, 1));
  ASSERT_TRUE(Eventually([&] { return gate_.waiting() == 1; }));
  busy.WriteJson(wire::MakeRequest("slow", nullptr, 2));  // queued behind it
  {
    RawPeer leaving(socket());
    leaving.WriteJson(wire::MakeRequest("ping", nullptr, 1));
    ASSERT_EQ(leaving.ReadJson()["result"], "pong");
  }  // gone: its close hook must not wait for the worker
  EXPECT_TRUE(Eventually([&] { return closed_.load() == 1; }));
  EXPECT_EQ(gate_.waiting(), 1);  // the worker is still held
  gate_.Open();
  EXPECT_EQ(busy.ReadJson()["result"], "slow-done");
  EXPECT_EQ(busy.ReadJson()["result"], "slow-done");
}

TEST_F(ServerFairness, OneUserNeverHoldsTheLastWorker) {
  // Two workers: one user (every peer here is this process's uid) may have
  // one call running; its second waits although a worker is idle, so that
  // worker stays free for whoever else comes.
  Start(2);
  RawPeer first(socket());
  RawPeer second(socket());
  first.WriteJson(wire::MakeRequest("slow", nullptr, 1));
  ASSERT_TRUE(Eventually([&] { return gate_.waiting() == 1; }));
  second.WriteJson(wire::MakeRequest("slow", nullptr, 2));
  second.WriteJson(wire::MakeRequest("ping", nullptr, 3));
  EXPECT_EQ(second.ReadJson()["id"], 3);  // non-blocking calls are not queued
  // Half a second for a second call to start, which a plain pool does at once.
  for (int i = 0; i < 50 && gate_.waiting() < 2; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(gate_.waiting(), 1);
  gate_.Open();
  EXPECT_EQ(first.ReadJson()["result"], "slow-done");
  EXPECT_EQ(second.ReadJson()["result"], "slow-done");
}

}  // namespace
}  // namespace vfiod::rpc
