// The server's limits over a real socket: strict JSON text, the batch length,
// the batch reply budget, back-pressure between the lines of one read, the
// per-user connection share, and the idle, incomplete-line and write timeouts.
#include <gtest/gtest.h>
#include <poll.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "proto/errors.h"
#include "rpc/admission.h"
#include "test_harness.h"

namespace vfiod::rpc {
namespace {

using nlohmann::json;
using testing::Eventually;
using testing::RawPeer;
using testing::RunningServer;
using namespace std::chrono_literals;

constexpr std::size_t kBigReply = 10000;

/// "ping" counts its calls; "big" answers kBigReply bytes; "hold" blocks
/// until released.
struct LimitsRegistry {
  LimitsRegistry() {
    EXPECT_TRUE(reg.Register("ping", [this](CallContext&, const json&) -> HandlerResult {
      ++pings;
      return Reply(json("pong"));
    }));
    EXPECT_TRUE(reg.Register("big", [this](CallContext&, const json&) -> HandlerResult {
      ++bigs;
      return Reply(json(std::string(kBigReply, 'x')));
    }));
    EXPECT_TRUE(reg.Register("hold",
                             [this](CallContext&, const json&) -> HandlerResult {
                               std::unique_lock lock(mu);
                               cv.wait(lock, [this] { return released; });
                               return Reply(json("held"));
                             },
                             {.blocking = true}));
  }
  void Release() {
    std::lock_guard lock(mu);
    released = true;
    cv.notify_all();
  }
  MethodRegistry reg;
  std::atomic<int> pings{0};
  std::atomic<int> bigs{0};
  std::mutex mu;
  std::condition_variable cv;
  bool released = false;
};

std::string Line(const std::string& method, int id) {
  return wire::ToLine(wire::MakeRequest(method, nullptr, id));
}

std::string Batch(const std::string& method, std::size_t n) {
  json batch = json::array();
  for (std::size_t i = 0; i < n; ++i) {
    batch.push_back(wire::MakeRequest(method, nullptr, static_cast<int>(i)));
  }
  return wire::ToLine(batch);
}

int Code(const json& reply) { return reply.at("error").at("code").get<int>(); }

/// The value of `counter` once it stopped changing for half a second (at
/// most ~20 s): how far the server goes on its own.
int Settled(const std::atomic<int>& counter) {
  int last = -1;
  for (int i = 0; i < 40 && counter.load() != last; ++i) {
    last = counter.load();
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
  }
  return counter.load();
}

TEST(ServerLimits, NulByteOrTrailingTextIsAParseError) {
  LimitsRegistry r;
  RunningServer server(r.reg);
  RawPeer peer(server.socket_path());
  std::string ping = R"({"jsonrpc":"2.0","id":1,"method":"ping"})";
  peer.Write(ping + std::string(1, '\0') + "\n");
  json reply = peer.ReadJson();
  EXPECT_EQ(Code(reply), wire::kParseError) << reply;
  EXPECT_TRUE(reply["id"].is_null());
  peer.Write(ping + std::string(1, '\0') + "junk\n");
  EXPECT_EQ(Code(peer.ReadJson()), wire::kParseError);
  peer.Write(ping + " x\n");
  EXPECT_EQ(Code(peer.ReadJson()), wire::kParseError);
  peer.Write(ping + " {}\n");
  EXPECT_EQ(Code(peer.ReadJson()), wire::kParseError);
  EXPECT_EQ(r.pings.load(), 0);
  peer.Write(ping + " \t\r\n");  // trailing blanks are fine
  EXPECT_EQ(peer.ReadJson()["result"], "pong");
}

TEST(ServerLimits, ABatchOverMaxBatchIsRefusedWholeAndNothingRuns) {
  LimitsRegistry r;
  RunningServer server(r.reg, ServerConfig{.max_batch = 8});
  RawPeer peer(server.socket_path());
  for (std::size_t n : {9u, 5000u}) {
    peer.Write(Batch("ping", n));
    json reply = peer.ReadJson();
    ASSERT_TRUE(reply.is_object()) << reply;  // one error, not an array
    EXPECT_EQ(Code(reply), wire::kInvalidRequest);
    EXPECT_TRUE(reply["id"].is_null());
  }
  EXPECT_EQ(r.pings.load(), 0);
  peer.Write(Batch("ping", 8));
  json replies = peer.ReadJson();
  ASSERT_TRUE(replies.is_array()) << replies;
  EXPECT_EQ(replies.size(), 8u);
  EXPECT_EQ(r.pings.load(), 8);
}

TEST(ServerLimits, ABatchPastItsReplyBudgetRunsNoFurtherElement) {
  LimitsRegistry r;
  RunningServer server(r.reg, ServerConfig{.max_batch_reply_bytes = 3 * kBigReply});
  RawPeer peer(server.socket_path());
  peer.Write(Batch("big", 50));
  json replies = peer.ReadJson();
  ASSERT_TRUE(replies.is_array()) << replies;
  ASSERT_EQ(replies.size(), 50u);
  // Three replies reach the budget (each is a little over kBigReply bytes).
  EXPECT_EQ(r.bigs.load(), 3);
  for (std::size_t i = 0; i < replies.size(); ++i) {
    EXPECT_EQ(replies[i]["id"], i);
    if (i < 3) {
      EXPECT_TRUE(replies[i].contains("result"));
    } else {
      EXPECT_EQ(Code(replies[i]), wire::kBusy);
      EXPECT_EQ(replies[i]["error"]["data"]["limit"], "max_batch_reply_bytes");
    }
  }
}

TEST(ServerLimits, OutputOverTheLimitStopsTheLinesOfOneRead) {
  LimitsRegistry r;
  constexpr std::size_t kLimit = 64 * 1024;
  RunningServer server(r.reg, ServerConfig{.max_output_bytes = kLimit});
  RawPeer peer(server.socket_path());
  std::string lines;
  constexpr int kLines = 1000;
  for (int i = 0; i < kLines; ++i) {
    lines += Line("big", i);
  }
  ASSERT_LT(lines.size(), 64u * 1024);  // one read of the server holds them all
  peer.Write(lines);
  // Not reading: the server holds the limit plus one reply, and the socket
  // buffers hold what they take (a few hundred KiB on Linux), far below the
  // 10 MB all 1000 replies make.
  int handled = Settled(r.bigs);
  EXPECT_GT(handled, 0);
  EXPECT_LT(handled, 200) << "replies queued past max_output_bytes";
  // Reading lets every line be answered, in order.
  for (int i = 0; i < kLines; ++i) {
    json reply = peer.ReadJson();
    ASSERT_EQ(reply["id"], i) << reply.dump().substr(0, 200);
  }
  EXPECT_EQ(r.bigs.load(), kLines);
}

TEST(ServerLimits, ConnectionsPastTheUserShareGetAnErrorLineAndAreClosed) {
  LimitsRegistry r;
  // Root has no per-user share: as root the total (with no reserve) decides.
  RunningServer server(r.reg, ServerConfig{.max_connections = 2,
                                           .max_connections_per_user = 2,
                                           .root_reserved_connections = 0});
  RawPeer a(server.socket_path());
  RawPeer b(server.socket_path());
  a.Write(Line("ping", 1));
  EXPECT_EQ(a.ReadJson()["result"], "pong");
  b.Write(Line("ping", 1));
  EXPECT_EQ(b.ReadJson()["result"], "pong");
  RawPeer c(server.socket_path());
  json refused = c.ReadJson();
  EXPECT_EQ(Code(refused), wire::kBusy) << refused;
  EXPECT_EQ(refused["error"]["data"]["limit"],
            ::geteuid() == 0 ? "max_clients" : "max_clients_per_user");
  EXPECT_TRUE(c.WaitEof());
  a.Close();  // its slot is free again once the close is seen
  EXPECT_TRUE(Eventually([&] {
    RawPeer d(server.socket_path());
    d.Write(Line("ping", 2));
    return d.ReadJson().value("result", json()) == "pong";
  }));
}

TEST(ServerLimits, AnIdleConnectionIsClosedAfterAnErrorLine) {
  LimitsRegistry r;
  RunningServer server(r.reg, ServerConfig{.idle_timeout = 300ms});
  RawPeer peer(server.socket_path());
  peer.Write(Line("ping", 1));
  EXPECT_EQ(peer.ReadJson()["result"], "pong");
  json bye = peer.ReadJson();
  EXPECT_EQ(Code(bye), wire::kBusy) << bye;
  EXPECT_EQ(bye["error"]["data"]["limit"], "idle_timeout");
  EXPECT_TRUE(peer.WaitEof());
}

TEST(ServerLimits, ACallInFlightIsNotIdle) {
  LimitsRegistry r;
  RunningServer server(r.reg, ServerConfig{.idle_timeout = 100ms});
  RawPeer peer(server.socket_path());
  peer.Write(Line("hold", 1));
  // Many idle periods pass while the call runs: nothing arrives, no close.
  wire::Frame frame = peer.ReadFrame(1500ms);
  EXPECT_EQ(frame.line, "<timeout>");
  r.Release();
  EXPECT_EQ(peer.ReadJson()["result"], "held");
  EXPECT_EQ(peer.ReadJson()["error"]["data"]["limit"], "idle_timeout");  // idle now
}

TEST(ServerLimits, AnIncompleteLineIsClosedAfterTheLineTimeout) {
  LimitsRegistry r;
  RunningServer server(r.reg, ServerConfig{.idle_timeout = 0ms, .line_timeout = 300ms});
  RawPeer peer(server.socket_path());
  peer.Write(Line("ping", 1) + R"({"jsonrpc":"2.0",)");
  EXPECT_EQ(peer.ReadJson()["result"], "pong");
  json bye = peer.ReadJson();
  EXPECT_EQ(Code(bye), wire::kBusy) << bye;
  EXPECT_EQ(bye["error"]["data"]["limit"], "line_timeout");
  EXPECT_TRUE(peer.WaitEof());
  // Without a partial line and with no idle timeout, nothing closes it.
  RawPeer quiet(server.socket_path());
  quiet.Write(Line("ping", 2));
  EXPECT_EQ(quiet.ReadJson()["result"], "pong");
  EXPECT_EQ(quiet.ReadFrame(1000ms).line, "<timeout>");
}

/// Whether the server closed `fd` within `timeout`, seen without reading it
/// (POLLRDHUP is reported while unread bytes remain).
bool ClosedWithoutReading(int fd, std::chrono::milliseconds timeout) {
  pollfd p{fd, POLLRDHUP, 0};
  return ::poll(&p, 1, static_cast<int>(timeout.count())) == 1 && (p.revents & POLLRDHUP) != 0;
}

std::string BigLines(int n) {
  std::string lines;
  for (int i = 0; i < n; ++i) {
    lines += Line("big", i);
  }
  return lines;
}

TEST(ServerLimits, AClientThatNeverReadsIsClosedAfterTheWriteTimeout) {
  LimitsRegistry r;
  RunningServer server(
      r.reg,
      ServerConfig{.max_output_bytes = 64 * 1024, .idle_timeout = 0ms, .write_timeout = 300ms});
  RawPeer peer(server.socket_path());
  peer.Write(BigLines(1000));
  EXPECT_TRUE(ClosedWithoutReading(peer.fd(), 10s)) << "a client that never reads stays open";
  EXPECT_LT(r.bigs.load(), 200) << "replies queued past max_output_bytes";
  // Without a write timeout the same client is held (reading paused) for ever.
  LimitsRegistry r2;
  RunningServer patient(r2.reg, ServerConfig{.max_output_bytes = 64 * 1024, .idle_timeout = 0ms});
  RawPeer held(patient.socket_path());
  held.Write(BigLines(1000));
  EXPECT_FALSE(ClosedWithoutReading(held.fd(), 1500ms));
  EXPECT_EQ(held.ReadJson()["id"], 0);
}

TEST(ServerLimits, AClientSlowToReadIsNotClosedByTheWriteTimeout) {
  LimitsRegistry r;
  RunningServer server(
      r.reg,
      ServerConfig{.max_output_bytes = 64 * 1024, .idle_timeout = 0ms, .write_timeout = 2000ms});
  RawPeer peer(server.socket_path());
  constexpr int kLines = 1000;
  peer.Write(BigLines(kLines));
  // Reading one 10 KB reply every 5 ms takes far longer than the timeout in
  // all, but the socket takes bytes again every few dozen replies.
  for (int i = 0; i < kLines; ++i) {
    json reply = peer.ReadJson();
    ASSERT_EQ(reply["id"], i) << reply.dump().substr(0, 200);
    std::this_thread::sleep_for(5ms);
  }
  EXPECT_EQ(r.bigs.load(), kLines);
}

TEST(Admission, PerUserShareTotalAndRootReserve) {
  Admission a(ServerConfig{
      .max_connections = 4, .max_connections_per_user = 2, .root_reserved_connections = 1});
  EXPECT_FALSE(a.Admit(1000));
  EXPECT_FALSE(a.Admit(1000));
  auto share = a.Admit(1000);
  ASSERT_TRUE(share);
  EXPECT_EQ(share->limit, "max_clients_per_user");
  EXPECT_FALSE(a.Admit(1001));
  EXPECT_FALSE(a.Admit(1001));
  auto full = a.Admit(1002);
  ASSERT_TRUE(full);
  EXPECT_EQ(full->limit, "max_clients");
  EXPECT_FALSE(a.Admit(0));  // the reserve
  auto root_full = a.Admit(0);
  ASSERT_TRUE(root_full);
  EXPECT_EQ(root_full->limit, "max_clients");
  a.Release(1000);
  EXPECT_EQ(a.of(1000), 1u);
  EXPECT_EQ(a.total(), 4u);
  EXPECT_TRUE(a.Admit(1002));  // refused: root's connection counts in max_clients too
  a.Release(0);
  EXPECT_FALSE(a.Admit(1002));
  a.Release(7);  // never counted: ignored
  EXPECT_EQ(a.total(), 4u);
}

}  // namespace
}  // namespace vfiod::rpc
