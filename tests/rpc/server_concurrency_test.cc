// Blocking handlers, limits, progress, close hooks, credentials, disconnects.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <condition_variable>
#include <mutex>

#include "gate.h"
#include "proto/errors.h"
#include "test_harness.h"

namespace vfiod::rpc {
namespace {

using nlohmann::json;
using testing::Eventually;
using testing::RawPeer;
using testing::RunningServer;

using testing::Gate;

struct Observed {
  std::mutex mu;
  std::vector<std::pair<ConnectionId, uid_t>> closed;  // from the close hook
  bool saw_cancel = false;
};

MethodRegistry ConcurrencyRegistry(Gate& gate, Observed& seen) {
  MethodRegistry reg;
  EXPECT_TRUE(reg.Register(
      "ping", [](CallContext&, const json&) -> HandlerResult { return Reply(json("pong")); }));
  EXPECT_TRUE(reg.Register("slow",
                           [&gate](CallContext&, const json&) -> HandlerResult {
                             gate.Wait();
                             return Reply(json("slow-done"));
                           },
                           {.blocking = true}));
  EXPECT_TRUE(reg.Register("until_cancelled",
                           [&gate, &seen](CallContext& ctx, const json&) -> HandlerResult {
                             EXPECT_TRUE(Eventually([&] { return ctx.cancelled(); }));
                             {
                               std::lock_guard lock(seen.mu);
                               seen.saw_cancel = ctx.cancelled();
                             }
                             gate.Wait();  // hold the call open: the close hook must wait for it
                             return Reply(json("late"));
                           },
                           {.blocking = true}));
  EXPECT_TRUE(reg.Register("progress",
                           [](CallContext& ctx, const json& p) -> HandlerResult {
                             int steps = p.at("steps");
                             for (int i = 0; i < steps; ++i) {
                               EXPECT_TRUE(ctx.Notify("progress", json{{"step", i}}));
                             }
                             return Reply(json(steps));
                           },
                           {.blocking = true}));
  EXPECT_TRUE(reg.Register("spam",
                           [](CallContext& ctx, const json&) -> HandlerResult {
                             // Notifies until the output limit drops one.
                             std::string payload(1024, 'p');
                             for (int i = 0; i < 200000; ++i) {
                               if (!ctx.Notify("spam", json{{"i", i}, {"pad", payload}})) {
                                 return Reply(json{{"dropped_at", i}});
                               }
                             }
                             return Reply(json{{"dropped_at", -1}});
                           },
                           {.blocking = true}));
  EXPECT_TRUE(reg.Register("big", [](CallContext&, const json&) -> HandlerResult {
    return Reply(json(std::string(4096, 'b')));
  }));
  EXPECT_TRUE(reg.Register("whoami", [](CallContext& ctx, const json&) -> HandlerResult {
    const PeerCredentials& p = ctx.peer();
    return Reply(json{{"uid", p.uid},
                      {"gid", p.gid},
                      {"pid", p.pid},
                      {"groups", p.groups},
                      {"conn", ctx.connection_id()}});
  }));
  return reg;
}

class ServerConcurrency : public ::testing::Test {
 protected:
  std::vector<CloseHook> Hooks() {
    return {[this](ConnectionId id, const PeerCredentials& peer) {
      std::lock_guard lock(seen_.mu);
      seen_.closed.emplace_back(id, peer.uid);
    }};
  }
  // A failed assertion must not leave a handler blocked: the server's
  // destructor joins the worker pool.
  void TearDown() override { gate_.Open(); }

  size_t ClosedCount() {
    std::lock_guard lock(seen_.mu);
    return seen_.closed.size();
  }

  Gate gate_;
  Observed seen_;
  MethodRegistry registry_ = ConcurrencyRegistry(gate_, seen_);
  RunningServer server_{
      registry_,
      ServerConfig{
          .max_inflight_per_connection = 2, .max_output_bytes = 64 * 1024, .worker_threads = 2},
      Hooks()};
};

TEST_F(ServerConcurrency, SlowHandlerDoesNotBlockPing) {
  RawPeer slow(server_.socket_path());
  RawPeer quick(server_.socket_path());
  slow.WriteJson(wire::MakeRequest("slow", nullptr, 1));
  ASSERT_TRUE(Eventually([&] { return gate_.waiting() == 1; }));
  quick.WriteJson(wire::MakeRequest("ping", nullptr, 2));
  EXPECT_EQ(quick.ReadJson()["result"], "pong");
  // Same connection too: a non-blocking call overtakes the blocked one.
  slow.WriteJson(wire::MakeRequest("ping", nullptr, 3));
  EXPECT_EQ(slow.ReadJson()["id"], 3);
  gate_.Open();
  EXPECT_EQ(slow.ReadJson()["result"], "slow-done");
}

TEST_F(ServerConcurrency, FloodGetsBusyForTheSurplusOnly) {
  RawPeer flood(server_.socket_path());
  RawPeer other(server_.socket_path());
  for (int id = 1; id <= 5; ++id) {
    flood.WriteJson(wire::MakeRequest("slow", nullptr, id));
  }
  std::vector<int> busy;
  for (int i = 0; i < 3; ++i) {
    json reply = flood.ReadJson();
    ASSERT_TRUE(reply.contains("error")) << reply;
    EXPECT_EQ(reply["error"]["code"], wire::kBusy);
    busy.push_back(reply["id"]);
  }
  EXPECT_EQ(busy, (std::vector<int>{3, 4, 5}));
  other.WriteJson(wire::MakeRequest("ping", nullptr, 1));
  EXPECT_EQ(other.ReadJson()["result"], "pong");
  gate_.Open();
  std::vector<int> done;
  for (int i = 0; i < 2; ++i) {
    json reply = flood.ReadJson();
    EXPECT_EQ(reply["result"], "slow-done");
    done.push_back(reply["id"]);
  }
  std::sort(done.begin(), done.end());
  EXPECT_EQ(done, (std::vector<int>{1, 2}));
}

TEST_F(ServerConcurrency, ProgressNotificationsPrecedeTheResult) {
  RawPeer peer(server_.socket_path());
  peer.WriteJson(wire::MakeRequest("progress", json{{"steps", 3}}, 1));
  for (int i = 0; i < 3; ++i) {
    json note = peer.ReadJson();
    EXPECT_EQ(note["method"], "progress");
    EXPECT_FALSE(note.contains("id"));
    EXPECT_EQ(note["params"]["step"], i);
  }
  EXPECT_EQ(peer.ReadJson()["result"], 3);
}

TEST_F(ServerConcurrency, NotificationsAreDroppedPastTheOutputLimit) {
  RawPeer peer(server_.socket_path());
  peer.WriteJson(wire::MakeRequest("spam", nullptr, 1));
  // Do not read until the handler is done: wait for its reply by draining.
  json reply;
  int notes = 0;
  for (;;) {
    reply = peer.ReadJson();
    if (!reply.contains("method")) {
      break;
    }
    ++notes;
  }
  ASSERT_TRUE(reply.contains("result")) << reply;
  int dropped_at = reply["result"]["dropped_at"];
  EXPECT_GE(dropped_at, 0);
  EXPECT_LE(notes, dropped_at);
}

TEST_F(ServerConcurrency, AClientThatDoesNotReadIsThrottledAlone) {
  RawPeer hog(server_.socket_path());
  ASSERT_EQ(::fcntl(hog.fd(), F_SETFL, ::fcntl(hog.fd(), F_GETFL) | O_NONBLOCK), 0);
  std::string line = wire::ToLine(wire::MakeRequest("big", nullptr, 1));
  // Without back-pressure the server would keep reading and queue 4 KiB per
  // line forever; with it, the server stops reading and our writes block.
  int lines = 0;
  bool blocked = false;
  std::size_t partial = 0;
  for (int i = 0; i < 20000 && !blocked; ++i) {
    ssize_t n = ::send(hog.fd(), line.data(), line.size(), MSG_NOSIGNAL);
    if (n < 0) {
      ASSERT_EQ(errno, EAGAIN);
      blocked = true;
    } else if (static_cast<std::size_t>(n) < line.size()) {
      partial = line.size() - static_cast<std::size_t>(n);
      blocked = true;
    }
    lines += n > 0 ? 1 : 0;
  }
  EXPECT_TRUE(blocked);
  RawPeer other(server_.socket_path());
  other.WriteJson(wire::MakeRequest("ping", nullptr, 1));
  EXPECT_EQ(other.ReadJson()["result"], "pong");
  // Now drain: every complete line is answered once reading resumes.
  ASSERT_EQ(::fcntl(hog.fd(), F_SETFL, ::fcntl(hog.fd(), F_GETFL) & ~O_NONBLOCK), 0);
  if (partial > 0) {
    hog.Write(line.substr(line.size() - partial));
  }
  for (int i = 0; i < lines; ++i) {
    json reply = hog.ReadJson();
    ASSERT_EQ(reply["result"].get_ref<const std::string&>().size(), 4096u) << i;
  }
}

TEST_F(ServerConcurrency, CloseHookFiresWithThePeer) {
  ConnectionId id = 0;
  {
    RawPeer peer(server_.socket_path());
    peer.WriteJson(wire::MakeRequest("whoami", nullptr, 1));
    id = peer.ReadJson()["result"]["conn"];
  }
  ASSERT_TRUE(Eventually([&] { return ClosedCount() == 1; }));
  std::lock_guard lock(seen_.mu);
  EXPECT_EQ(seen_.closed[0].first, id);
  EXPECT_EQ(seen_.closed[0].second, ::getuid());
}

TEST_F(ServerConcurrency, PeerCredentialsAreTheClients) {
  RawPeer peer(server_.socket_path());
  peer.WriteJson(wire::MakeRequest("whoami", nullptr, 1));
  json r = peer.ReadJson()["result"];
  EXPECT_EQ(r["uid"], ::getuid());
  EXPECT_EQ(r["gid"], ::getgid());
  EXPECT_EQ(r["pid"], ::getpid());
  std::vector<gid_t> groups(static_cast<std::size_t>(::getgroups(0, nullptr)));
  groups.resize(
      static_cast<std::size_t>(::getgroups(static_cast<int>(groups.size()), groups.data())));
  std::sort(groups.begin(), groups.end());
  groups.erase(std::unique(groups.begin(), groups.end()), groups.end());
  EXPECT_EQ(r["groups"].get<std::vector<gid_t>>(), groups);
}

TEST_F(ServerConcurrency, DisconnectMidRequestCancelsAndHookWaitsForTheCall) {
  {
    RawPeer peer(server_.socket_path());
    peer.WriteJson(wire::MakeRequest("until_cancelled", nullptr, 1));
  }  // the client goes away while its call runs
  ASSERT_TRUE(Eventually([&] { return gate_.waiting() == 1; }));
  {
    std::lock_guard lock(seen_.mu);
    EXPECT_TRUE(seen_.saw_cancel);
  }
  EXPECT_EQ(ClosedCount(), 0u);  // the call is still running: no hook yet
  EXPECT_EQ(server_.server().connection_count(), 1u);
  gate_.Open();
  ASSERT_TRUE(Eventually([&] { return ClosedCount() == 1; }));
  EXPECT_TRUE(Eventually([&] { return server_.server().connection_count() == 0; }));
  RawPeer next(server_.socket_path());
  next.WriteJson(wire::MakeRequest("ping", nullptr, 1));
  EXPECT_EQ(next.ReadJson()["result"], "pong");
}

TEST_F(ServerConcurrency, HalfCloseStillGetsItsReplies) {
  RawPeer peer(server_.socket_path());
  peer.WriteJson(wire::MakeRequest("slow", nullptr, 1));
  peer.WriteJson(wire::MakeRequest("ping", nullptr, 2));
  ASSERT_EQ(::shutdown(peer.fd(), SHUT_WR), 0);
  EXPECT_EQ(peer.ReadJson()["id"], 2);
  gate_.Open();
  EXPECT_EQ(peer.ReadJson()["result"], "slow-done");
  EXPECT_TRUE(peer.WaitEof());
}

}  // namespace
}  // namespace vfiod::rpc
