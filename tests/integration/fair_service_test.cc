// Fair service, against the real vfiod binary on the model kernel made slow
// (model.map_dma_us_per_mib): while one user floods long maps on several
// connections, another user's calls, blocking ones included, all complete
// before the flood is over. On a single FIFO pool the other user's every
// blocking call waits behind the flood's queued maps, so its last call ends
// after the flood does.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "as_user.h"
#include "daemon_harness.h"
#include "forked_client.h"

namespace vfiod::itest {
namespace {

// The flood: root, four connections sharing one named container, each sending
// two batches of eight 1 MiB maps; each map takes 50 ms in the model, and the
// container's mutex serializes them: 64 maps, 3.2 s at least.
constexpr int kFloodConnections = 4;
constexpr int kBatchesPerConnection = 2;
constexpr int kMapsPerBatch = 8;
constexpr uint64_t kFloodMapBytes = 1 << 20;
constexpr uint32_t kMapUsPerMib = 50'000;
// The other user: this many rounds of ping, a 4 KiB map and its free.
constexpr int kRounds = 10;

uint64_t MonotonicNs() {
  // steady_clock is CLOCK_MONOTONIC: comparable between the test's processes.
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                   std::chrono::steady_clock::now().time_since_epoch())
                                   .count());
}

class FairServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (InVm()) {
      GTEST_SKIP() << "model-kernel scenario (slow maps come from the model's delay knob)";
    }
    daemon_ = std::make_unique<Daemon>(Daemon::DefaultPolicy(), "2M", Launch::kDirect,
                                       json{{"worker_threads", 4}},
                                       json{{"model", {{"map_dma_us_per_mib", kMapUsPerMib}}}});
  }
  void TearDown() override {
    if (daemon_) {
      EXPECT_EQ(daemon_->Stop(), 0) << ReadAll(daemon_->log_path());
    }
  }

  /// One flood connection `c`: attaches the named container and sends its
  /// batches; counts the maps that failed into `failures`. Returns when its
  /// last reply arrived (monotonic ns). The caller keeps `c` open, and with
  /// it the mappings (a closed session's are freed).
  static uint64_t Flood(client::Client& c, std::atomic<int>& failures) {
    auto attached = c.Call("container.attach", {{"name", "flood"}});
    if (!attached) {
      failures += kBatchesPerConnection * kMapsPerBatch;
      return MonotonicNs();
    }
    json params = {
        {"container", attached->result["container"]}, {"size", kFloodMapBytes}, {"backing", "4k"}};
    std::vector<client::BatchCall> calls(kMapsPerBatch, client::BatchCall{"dma.alloc", params});
    for (int b = 0; b < kBatchesPerConnection; ++b) {
      auto replies = c.Batch(calls, {}, client::kNoTimeout);
      if (!replies) {
        failures += kMapsPerBatch;
        continue;
      }
      for (const auto& r : *replies) {
        failures += r ? 0 : 1;
      }
    }
    return MonotonicNs();
  }

  std::unique_ptr<Daemon> daemon_;
};

/// The other user's calls; "done@<monotonic ns at the end>" or what failed.
std::string OtherUsersRounds(const std::string& socket) {
  auto c = client::Client::Connect(socket);
  if (!c) {
    return "connect: " + c.error().message();
  }
  auto made = c->Call("container.create", {{"devices", {kEdu}}});
  if (!made) {
    return "container.create: " + made.error().Describe();
  }
  const uint64_t container = made->result["container"];
  for (int i = 0; i < kRounds; ++i) {
    auto pong = c->Call("ping");
    auto map = c->Call("dma.alloc", {{"container", container}, {"size", 4096}, {"backing", "4k"}});
    if (!pong || !map) {
      return "round " + std::to_string(i) + ": " +
             (pong ? map.error().Describe() : pong.error().Describe());
    }
    auto freed = c->Call("dma.free", {{"mapping", map->result["mapping"]}});
    if (!freed) {
      return "round " + std::to_string(i) + ": dma.free: " + freed.error().Describe();
    }
  }
  return "done@" + std::to_string(MonotonicNs());
}

TEST_F(FairServiceTest, AnotherUsersCallsCompleteWhileOneUserFloodsLongMaps) {
  client::Client owner = daemon_->Connect();
  ASSERT_CALL_OK(owner.Call("container.create", {{"devices", {kIvshmem}}, {"name", "flood"}}));
  std::atomic<int> failures{0};
  std::vector<uint64_t> ended(kFloodConnections, 0);
  std::vector<client::Client> clients;
  for (int i = 0; i < kFloodConnections; ++i) {
    clients.push_back(daemon_->Connect());
  }
  std::vector<std::thread> flood;
  for (int i = 0; i < kFloodConnections; ++i) {
    flood.emplace_back([&, i] { ended[i] = Flood(clients[i], failures); });
  }
  // Start once the flood is under way (its first map is done).
  auto status_now = [&] {
    auto s = owner.Call("status");
    return s ? s->result : json();
  };
  json under_way = AwaitStatus(status_now, [](const json& s) { return s["mappings"] >= 1; });
  EXPECT_GE(under_way["mappings"], 1);

  std::string other = RunAs(kNobody, kNobody, [&] { return OtherUsersRounds(daemon_->socket()); });
  for (std::thread& t : flood) {
    t.join();
  }
  const uint64_t flood_end = *std::max_element(ended.begin(), ended.end());

  ASSERT_EQ(other.rfind("done@", 0), 0u) << other;
  const uint64_t other_end = std::stoull(other.substr(5));
  EXPECT_EQ(failures.load(), 0);
  auto status = owner.Call("status");
  ASSERT_CALL_OK(status);
  EXPECT_EQ(status->result["mappings"], kFloodConnections * kBatchesPerConnection * kMapsPerBatch);
  // The property: the other user's last call ended while the flood still ran.
  EXPECT_LT(other_end, flood_end) << "the other user finished "
                                  << (other_end - flood_end) / 1'000'000 << " ms after the flood";
}

}  // namespace
}  // namespace vfiod::itest
