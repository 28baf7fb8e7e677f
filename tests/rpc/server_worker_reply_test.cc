// Replies of blocking calls written by the worker that ran them: fds, order
// behind queued output, batches, closing clients and many clients at once.
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "proto/errors.h"
#include "test_harness.h"

namespace vfiod::rpc {
namespace {

using nlohmann::json;
using testing::CountOpenFds;
using testing::Eventually;
using testing::MakeMemfd;
using testing::RawPeer;
using testing::ReadAll;
using testing::RunningServer;

struct Counters {
  std::atomic<int> chatty_done{0};  // chatty handlers that returned
  std::atomic<int> closed{0};       // close hooks run
};

MethodRegistry WorkerRegistry(Counters& counters) {
  MethodRegistry reg;
  EXPECT_TRUE(reg.Register(
      "ping", [](CallContext&, const json&) -> HandlerResult { return Reply(json("pong")); }));
  EXPECT_TRUE(reg.Register("echo",
                           [](CallContext&, const json& p) -> HandlerResult { return Reply(p); },
                           {.blocking = true}));
  // A new memfd holding params.text.
  EXPECT_TRUE(reg.Register("memfd",
                           [](CallContext&, const json& p) -> HandlerResult {
                             std::vector<UniqueFd> fds;
                             fds.push_back(MakeMemfd(p.at("text")));
                             return Reply(json{{"memfd", wire::FdRef(0)}}, std::move(fds));
                           },
                           {.blocking = true, .reply_fds = 1}));
  // params.count notifications of params.pad bytes each, then a memfd.
  EXPECT_TRUE(
      reg.Register("chatty",
                   [&counters](CallContext& ctx, const json& p) -> HandlerResult {
                     const std::string pad(p.at("pad").get<std::size_t>(), 'n');
                     const int count = p.at("count");
                     int sent = 0;
                     for (int i = 0; i < count; ++i) {
                       sent += ctx.Notify("note", json{{"i", i}, {"pad", pad}}) ? 1 : 0;
                     }
                     std::vector<UniqueFd> fds;
                     fds.push_back(MakeMemfd("after"));
                     ++counters.chatty_done;
                     return Reply(json{{"sent", sent}, {"memfd", wire::FdRef(0)}}, std::move(fds));
                   },
                   {.blocking = true, .reply_fds = 1}));
  // A reply of params.bytes bytes.
  EXPECT_TRUE(reg.Register("huge",
                           [](CallContext&, const json& p) -> HandlerResult {
                             return Reply(json(std::string(p.at("bytes").get<std::size_t>(), 'h')));
                           },
                           {.blocking = true}));
  return reg;
}

class WorkerReply : public ::testing::Test {
 protected:
  std::vector<CloseHook> Hooks() {
    return {[this](ConnectionId, const PeerCredentials&) { ++counters_.closed; }};
  }

  Counters counters_;
  MethodRegistry registry_ = WorkerRegistry(counters_);
  RunningServer server_{registry_, ServerConfig{.worker_threads = 4}, Hooks()};
};

TEST_F(WorkerReply, EachReplyCarriesItsOwnFd) {
  RawPeer peer(server_.socket_path());
  for (int i = 0; i < 100; ++i) {
    const std::string text = "memfd-" + std::to_string(i);
    peer.WriteJson(wire::MakeRequest("memfd", json{{"text", text}}, i));
    wire::Frame frame = peer.ReadFrame();
    json reply = json::parse(frame.line);
    ASSERT_EQ(reply["id"], i) << reply;
    ASSERT_EQ(frame.fds.size(), 1u) << reply;
    EXPECT_EQ(ReadAll(frame.fds[0].get()), text);
  }
}

TEST_F(WorkerReply, AReplyBehindAFullSocketKeepsItsPlaceAndItsFd) {
  RawPeer peer(server_.socket_path());
  // 64 x 16 KiB of notifications is more than a unix socket buffers, so the
  // reply is queued behind them while the client does not read.
  constexpr int kCount = 64;
  peer.WriteJson(wire::MakeRequest("chatty", json{{"count", kCount}, {"pad", 16 * 1024}}, 7));
  ASSERT_TRUE(Eventually([&] { return counters_.chatty_done.load() == 1; }));
  for (int i = 0; i < kCount; ++i) {
    wire::Frame frame = peer.ReadFrame();
    json note = json::parse(frame.line);
    ASSERT_EQ(note["method"], "note") << i;
    ASSERT_EQ(note["params"]["i"], i);
    EXPECT_TRUE(frame.fds.empty());
  }
  wire::Frame frame = peer.ReadFrame();
  json reply = json::parse(frame.line);
  ASSERT_EQ(reply["id"], 7) << reply;
  EXPECT_EQ(reply["result"]["sent"], kCount);
  ASSERT_EQ(frame.fds.size(), 1u);
  EXPECT_EQ(ReadAll(frame.fds[0].get()), "after");
}

TEST_F(WorkerReply, BatchOfBlockingAndQuickCallsIsOneLineInOrder) {
  RawPeer peer(server_.socket_path());
  json batch = json::array(
      {wire::MakeRequest("memfd", json{{"text", "a"}}, 1), wire::MakeRequest("ping", nullptr, 2),
       wire::MakeRequest("echo", json{{"n", 3}}, 3),
       wire::MakeRequest("echo", json{{"n", 99}}, std::nullopt),
       wire::MakeRequest("memfd", json{{"text", "b"}}, 4), wire::MakeRequest("ping", nullptr, 5)});
  peer.WriteJson(wire::MakeRequest("echo", json{{"n", 10}}, 10));
  peer.WriteJson(batch);
  peer.WriteJson(wire::MakeRequest("memfd", json{{"text", "c"}}, 11));
  std::set<int> singles;
  for (int line = 0; line < 3; ++line) {
    wire::Frame frame = peer.ReadFrame();
    json reply = json::parse(frame.line);
    if (!reply.is_array()) {
      singles.insert(reply["id"].get<int>());
      EXPECT_EQ(frame.fds.size(), reply["id"] == 11 ? 1u : 0u) << reply;
      continue;
    }
    ASSERT_EQ(reply.size(), 5u) << reply;
    std::vector<int> ids;
    for (const json& r : reply) {
      ids.push_back(r["id"]);
    }
    EXPECT_EQ(ids, (std::vector<int>{1, 2, 3, 4, 5}));
    ASSERT_EQ(frame.fds.size(), 2u);
    EXPECT_EQ(ReadAll(frame.fds[wire::AsFdRef(reply[0]["result"]["memfd"]).value()].get()), "a");
    EXPECT_EQ(ReadAll(frame.fds[wire::AsFdRef(reply[3]["result"]["memfd"]).value()].get()), "b");
    EXPECT_EQ(reply[1]["result"], "pong");
    EXPECT_EQ(reply[2]["result"]["n"], 3);
  }
  EXPECT_EQ(singles, (std::set<int>{10, 11}));
}

TEST_F(WorkerReply, AClientClosingMidReplyIsClosedAndLeaksNothing) {
  const int before = CountOpenFds();
  for (int round = 0; round < 10; ++round) {
    RawPeer peer(server_.socket_path());
    peer.WriteJson(wire::MakeRequest("huge", json{{"bytes", 4 << 20}}, 1));
    pollfd p{peer.fd(), POLLIN, 0};
    ASSERT_EQ(::poll(&p, 1, 10000), 1);
    char some[1000];
    ASSERT_GT(::recv(peer.fd(), some, sizeof(some), 0), 0);
    peer.Close();  // most of the reply is still queued or being written
  }
  ASSERT_TRUE(Eventually([&] { return counters_.closed.load() == 10; }));
  EXPECT_TRUE(Eventually([&] { return server_.server().connection_count() == 0; }));
  EXPECT_TRUE(Eventually([&] { return CountOpenFds() <= before; }));
  RawPeer next(server_.socket_path());
  next.WriteJson(wire::MakeRequest("ping", nullptr, 1));
  EXPECT_EQ(next.ReadJson()["result"], "pong");
}

TEST_F(WorkerReply, RepliesOfAClientGoneBeforeTheyLeaveAreDropped) {
  const int before = CountOpenFds();
  for (int round = 0; round < 50; ++round) {
    RawPeer peer(server_.socket_path());
    peer.WriteJson(wire::MakeRequest("memfd", json{{"text", "gone"}}, 1));
    peer.Close();  // its reply (with a memfd) has nowhere to go
  }
  ASSERT_TRUE(Eventually([&] { return counters_.closed.load() == 50; }));
  EXPECT_TRUE(Eventually([&] { return CountOpenFds() <= before; }));
}

TEST_F(WorkerReply, HalfCloseGetsEveryBlockingReplyThenEof) {
  RawPeer peer(server_.socket_path());
  for (int i = 1; i <= 3; ++i) {
    peer.WriteJson(wire::MakeRequest("echo", json{{"n", i}}, i));
  }
  ASSERT_EQ(::shutdown(peer.fd(), SHUT_WR), 0);
  std::set<int> ids;
  for (int i = 0; i < 3; ++i) {
    json reply = peer.ReadJson();
    ASSERT_TRUE(reply.contains("result")) << reply;
    EXPECT_EQ(reply["result"]["n"], reply["id"]);
    ids.insert(reply["id"].get<int>());
  }
  EXPECT_EQ(ids, (std::set<int>{1, 2, 3}));
  EXPECT_TRUE(peer.WaitEof());
  EXPECT_TRUE(Eventually([&] { return counters_.closed.load() == 1; }));
}

TEST_F(WorkerReply, ManyClientsEachGetTheirOwnReplies) {
  constexpr int kClients = 16;
  constexpr int kCalls = 100;
  std::atomic<int> good{0};
  std::vector<std::thread> threads;
  for (int c = 0; c < kClients; ++c) {
    threads.emplace_back([&, c] {
      RawPeer peer(server_.socket_path());
      for (int i = 0; i < kCalls; ++i) {
        // A blocking and a quick call in one write: their replies may cross.
        peer.Write(wire::ToLine(wire::MakeRequest("echo", json{{"c", c}, {"i", i}}, 2 * i)) +
                   wire::ToLine(wire::MakeRequest("ping", nullptr, 2 * i + 1)));
        std::map<int, json> replies;
        for (int k = 0; k < 2; ++k) {
          json reply = peer.ReadJson();
          if (reply.is_object() && reply.contains("id")) {
            replies[reply["id"].get<int>()] = reply;
          }
        }
        if (replies.size() == 2 && replies[2 * i]["result"] == json{{"c", c}, {"i", i}} &&
            replies[2 * i + 1]["result"] == "pong") {
          ++good;
        }
      }
    });
  }
  for (auto& t : threads) {
    t.join();
  }
  EXPECT_EQ(good.load(), kClients * kCalls);
  EXPECT_TRUE(Eventually([&] { return counters_.closed.load() == kClients; }));
}

}  // namespace
}  // namespace vfiod::rpc
