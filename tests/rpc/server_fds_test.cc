// fd passing through the server, both ways, and fd hygiene.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <mutex>

#include "proto/errors.h"
#include "proto/fd_passing.h"
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
using testing::SendWithAnyFdCount;

// fds a handler chose to keep, so the test can count them; and how many
// memfds the server made.
struct Kept {
  std::mutex mu;
  std::vector<UniqueFd> fds;
  std::atomic<int> made{0};
};

MethodRegistry FdRegistry(Kept& kept) {
  MethodRegistry reg;
  EXPECT_TRUE(reg.Register(
      "ping", [](CallContext&, const json&) -> HandlerResult { return Reply(json("pong")); }));
  // Writes params.text into the fd params.target refers to.
  EXPECT_TRUE(reg.Register("write_into", [](CallContext& ctx, const json& p) -> HandlerResult {
    auto fd = ctx.TakeFd(wire::AsFdRef(p.at("target")).value());
    if (!fd) {
      return std::unexpected(wire::MakeError(fd.error(), wire::kFdError));
    }
    std::string text = p.at("text");
    if (::pwrite(fd->get(), text.data(), text.size(), 0) != static_cast<ssize_t>(text.size())) {
      return std::unexpected(wire::MakeError(Error{errno, "pwrite", ""}));
    }
    return Reply(json{{"written", text.size()}});
  }));
  // Returns a new memfd holding params.text.
  EXPECT_TRUE(reg.Register("make_memfd",
                           [&kept](CallContext&, const json& p) -> HandlerResult {
                             std::vector<UniqueFd> fds;
                             fds.push_back(MakeMemfd(p.at("text")));
                             ++kept.made;
                             return Reply(json{{"memfd", wire::FdRef(0)}}, std::move(fds));
                           },
                           {.reply_fds = 1}));
  // Returns a memfd without declaring it (a handler bug).
  EXPECT_TRUE(reg.Register("undeclared_fd", [&kept](CallContext&, const json&) -> HandlerResult {
    std::vector<UniqueFd> fds;
    fds.push_back(MakeMemfd("x"));
    ++kept.made;
    return Reply(json{{"memfd", wire::FdRef(0)}}, std::move(fds));
  }));
  // Keeps the referenced fd.
  EXPECT_TRUE(reg.Register("keep", [&kept](CallContext& ctx, const json& p) -> HandlerResult {
    auto fd = ctx.TakeFd(wire::AsFdRef(p.at("fd")).value());
    if (!fd) {
      return std::unexpected(wire::MakeError(fd.error(), wire::kFdError));
    }
    std::lock_guard lock(kept.mu);
    kept.fds.push_back(std::move(*fd));
    return Reply(json(true));
  }));
  return reg;
}

class ServerFds : public ::testing::Test {
 protected:
  Kept kept_;
  MethodRegistry registry_ = FdRegistry(kept_);
  RunningServer server_{registry_};
  RawPeer peer_{server_.socket_path()};

  void SetUp() override {
    // One round trip, so the server side of peer_ exists before fds are counted.
    peer_.WriteJson(wire::MakeRequest("ping", nullptr, 0));
    ASSERT_EQ(peer_.ReadJson()["result"], "pong");
  }
};

TEST_F(ServerFds, ClientMemfdIsWrittenByTheServer) {
  UniqueFd mem = MakeMemfd("");
  peer_.WriteJson(
      wire::MakeRequest("write_into", json{{"target", wire::FdRef(0)}, {"text", "from-server"}}, 1),
      {mem.get()});
  json reply = peer_.ReadJson();
  EXPECT_EQ(reply["result"]["written"], 11) << reply;
  EXPECT_EQ(ReadAll(mem.get()), "from-server");
}

TEST_F(ServerFds, ServerMemfdReachesTheClient) {
  peer_.WriteJson(wire::MakeRequest("make_memfd", json{{"text", "to-client"}}, 1));
  wire::Frame frame = peer_.ReadFrame();
  json reply = json::parse(frame.line);
  auto index = wire::AsFdRef(reply["result"]["memfd"]);
  ASSERT_TRUE(index) << reply;
  ASSERT_EQ(frame.fds.size(), 1u);
  EXPECT_EQ(ReadAll(frame.fds[*index].get()), "to-client");
}

TEST_F(ServerFds, BatchRepliesRenumberTheirFds) {
  json batch = json::array({wire::MakeRequest("make_memfd", json{{"text", "first"}}, 1),
                            wire::MakeRequest("make_memfd", json{{"text", "second"}}, 2)});
  peer_.WriteJson(batch);
  wire::Frame frame = peer_.ReadFrame();
  json reply = json::parse(frame.line);
  ASSERT_EQ(frame.fds.size(), 2u);
  for (const json& r : reply) {
    auto index = wire::AsFdRef(r["result"]["memfd"]);
    ASSERT_TRUE(index && *index < 2);
    EXPECT_EQ(ReadAll(frame.fds[*index].get()), r["id"] == 1 ? "first" : "second");
  }
}

TEST_F(ServerFds, UnreferencedFdsAreClosedAtOnce) {
  int before = CountOpenFds();
  {
    UniqueFd a = MakeMemfd("a");
    UniqueFd b = MakeMemfd("b");
    UniqueFd c = MakeMemfd("c");
    // Only fd 1 is referenced; 0 and 2 are surplus.
    peer_.WriteJson(wire::MakeRequest("keep", json{{"fd", wire::FdRef(1)}}, 1),
                    {a.get(), b.get(), c.get()});
    EXPECT_EQ(peer_.ReadJson()["result"], true);
  }
  std::lock_guard lock(kept_.mu);
  ASSERT_EQ(kept_.fds.size(), 1u);
  EXPECT_EQ(ReadAll(kept_.fds[0].get()), "b");
  EXPECT_EQ(CountOpenFds(), before + 1);  // only the kept one survives
}

TEST_F(ServerFds, ReferenceBeyondTheCarriedFdsIsAnFdError) {
  int before = CountOpenFds();
  {
    UniqueFd a = MakeMemfd("a");
    peer_.WriteJson(wire::MakeRequest("keep", json{{"fd", wire::FdRef(3)}}, 1), {a.get()});
    json reply = peer_.ReadJson();
    EXPECT_EQ(reply["error"]["code"], wire::kFdError);
  }
  EXPECT_EQ(CountOpenFds(), before);
}

TEST_F(ServerFds, TruncatedControlDataFailsTheMessageWithoutLeaks) {
  int before = CountOpenFds();
  {
    constexpr int kCount = static_cast<int>(wire::kMaxFdsPerMessage) + 4;
    std::vector<UniqueFd> mems;
    std::vector<int> raw;
    for (int i = 0; i < kCount; ++i) {
      mems.push_back(MakeMemfd("m"));
      raw.push_back(mems.back().get());
    }
    std::string line = wire::ToLine(wire::MakeRequest("keep", json{{"fd", wire::FdRef(0)}}, 7));
    ASSERT_EQ(SendWithAnyFdCount(peer_.fd(), line, raw), static_cast<ssize_t>(line.size()));
    json reply = peer_.ReadJson();
    EXPECT_EQ(reply["error"]["code"], wire::kFdError) << reply;
    EXPECT_EQ(reply["id"], 7);
  }
  EXPECT_EQ(CountOpenFds(), before);
  std::lock_guard lock(kept_.mu);
  EXPECT_TRUE(kept_.fds.empty());
  // The connection is still usable.
  UniqueFd mem = MakeMemfd("");
  peer_.WriteJson(
      wire::MakeRequest("write_into", json{{"target", wire::FdRef(0)}, {"text", "ok"}}, 8),
      {mem.get()});
  EXPECT_EQ(peer_.ReadJson()["id"], 8);
  EXPECT_EQ(ReadAll(mem.get()), "ok");
}

json MakeMemfdCall(int id) {
  return wire::MakeRequest("make_memfd", json{{"text", "m" + std::to_string(id)}}, id);
}

TEST_F(ServerFds, BatchPastTheReplyFdLimitRunsOnlyWhatFits) {
  constexpr int kCalls = static_cast<int>(wire::kMaxFdsPerMessage) + 4;
  json batch = json::array();
  for (int id = 0; id < kCalls; ++id) {
    batch.push_back(MakeMemfdCall(id));
  }
  peer_.WriteJson(batch);
  wire::Frame frame = peer_.ReadFrame();
  json replies = json::parse(frame.line);
  ASSERT_EQ(replies.size(), static_cast<std::size_t>(kCalls)) << replies;
  ASSERT_EQ(frame.fds.size(), wire::kMaxFdsPerMessage);
  for (const json& r : replies) {
    int id = r["id"];
    if (id < static_cast<int>(wire::kMaxFdsPerMessage)) {
      auto index = wire::AsFdRef(r["result"]["memfd"]);
      ASSERT_TRUE(index) << r;
      EXPECT_EQ(ReadAll(frame.fds[*index].get()), "m" + std::to_string(id));
    } else {
      EXPECT_EQ(r["error"]["code"], wire::kFdError) << r;
      EXPECT_EQ(r["error"]["data"]["detail"],
                "a batch reply carries at most 16 fds: split the batch");
    }
  }
  // The surplus calls never ran: no memfd was made for them.
  EXPECT_EQ(kept_.made.load(), static_cast<int>(wire::kMaxFdsPerMessage));
}

TEST_F(ServerFds, NotificationsAndFdlessCallsCostNoReplyFds) {
  json batch = json::array();
  for (int id = 0; id < static_cast<int>(wire::kMaxFdsPerMessage); ++id) {
    batch.push_back(MakeMemfdCall(id));
  }
  batch.push_back(wire::MakeRequest("make_memfd", json{{"text", "note"}}, std::nullopt));
  batch.push_back(wire::MakeRequest("ping", nullptr, 100));
  peer_.WriteJson(batch);
  wire::Frame frame = peer_.ReadFrame();
  json replies = json::parse(frame.line);
  ASSERT_EQ(replies.size(), wire::kMaxFdsPerMessage + 1) << replies;
  EXPECT_EQ(frame.fds.size(), wire::kMaxFdsPerMessage);
  for (const json& r : replies) {
    EXPECT_TRUE(r.contains("result")) << r;
  }
  EXPECT_TRUE(testing::Eventually([&] { return kept_.made.load() == 17; }));
}

TEST_F(ServerFds, UndeclaredReplyFdsAreAnInternalErrorAndClosed) {
  int before = CountOpenFds();
  peer_.WriteJson(wire::MakeRequest("undeclared_fd", nullptr, 3));
  wire::Frame frame = peer_.ReadFrame();
  json reply = json::parse(frame.line);
  EXPECT_EQ(reply["error"]["code"], wire::kInternalError) << reply;
  EXPECT_TRUE(frame.fds.empty());
  EXPECT_EQ(kept_.made.load(), 1);
  EXPECT_EQ(CountOpenFds(), before);
}

TEST_F(ServerFds, BatchWithTruncatedClientFdsRunsNothing) {
  int before = CountOpenFds();
  {
    constexpr int kCount = static_cast<int>(wire::kMaxFdsPerMessage) + 4;
    std::vector<UniqueFd> mems;
    std::vector<int> raw;
    for (int i = 0; i < kCount; ++i) {
      mems.push_back(MakeMemfd("m"));
      raw.push_back(mems.back().get());
    }
    json batch =
        json::array({wire::MakeRequest("keep", json{{"fd", wire::FdRef(0)}}, 1),
                     wire::MakeRequest("keep", json{{"fd", wire::FdRef(1)}}, 2), MakeMemfdCall(3)});
    std::string line = wire::ToLine(batch);
    ASSERT_EQ(SendWithAnyFdCount(peer_.fd(), line, raw), static_cast<ssize_t>(line.size()));
    json replies = peer_.ReadJson();
    ASSERT_EQ(replies.size(), 3u) << replies;
    for (const json& r : replies) {
      EXPECT_EQ(r["error"]["code"], wire::kFdError) << r;
    }
  }
  EXPECT_EQ(CountOpenFds(), before);
  EXPECT_EQ(kept_.made.load(), 0);
  std::lock_guard lock(kept_.mu);
  EXPECT_TRUE(kept_.fds.empty());
}

TEST_F(ServerFds, PipelinedLinesKeepTheirOrderAndEachReplyItsOwnFds) {
  // Four lines in one write: their replies are written together, but a reply
  // with fds still travels alone with them (the wire rule).
  std::string lines =
      wire::ToLine(wire::MakeRequest("ping", nullptr, 1)) + wire::ToLine(MakeMemfdCall(2)) +
      wire::ToLine(wire::MakeRequest("ping", nullptr, 3)) + wire::ToLine(MakeMemfdCall(4));
  peer_.Write(lines);
  for (int id = 1; id <= 4; ++id) {
    wire::Frame frame = peer_.ReadFrame();
    json reply = json::parse(frame.line);
    ASSERT_EQ(reply["id"], id) << reply;
    if (id % 2 == 1) {
      EXPECT_EQ(reply["result"], "pong");
      EXPECT_TRUE(frame.fds.empty());
    } else {
      ASSERT_EQ(frame.fds.size(), 1u) << reply;
      EXPECT_EQ(ReadAll(frame.fds[0].get()), "m" + std::to_string(id));
    }
  }
}

TEST(MethodRegistry, RefusesMoreReplyFdsThanAMessageCarries) {
  MethodRegistry reg;
  auto handler = [](CallContext&, const json&) -> HandlerResult { return Reply(); };
  EXPECT_TRUE(reg.Register("fits", handler, {.reply_fds = wire::kMaxFdsPerMessage}));
  auto over = reg.Register("over", handler, {.reply_fds = wire::kMaxFdsPerMessage + 1});
  ASSERT_FALSE(over);
  EXPECT_EQ(over.error().code, EINVAL);
  EXPECT_EQ(reg.Find("over"), nullptr);
}

TEST_F(ServerFds, FdsOfAClosedConnectionAreReleased) {
  int before = CountOpenFds();
  {
    RawPeer other(server_.socket_path());
    UniqueFd a = MakeMemfd("a");
    // A line that never ends: the fds sit in the server's framer.
    other.Write("{\"jsonrpc\":\"2.0\"", {a.get()});
  }
  EXPECT_TRUE(testing::Eventually([&] { return CountOpenFds() == before; }));
}

// True once no process holds a write end of the pipe `read_end` belongs to.
bool WriteEndsClosed(int read_end) {
  pollfd p{read_end, POLLIN, 0};
  return ::poll(&p, 1, 0) == 1 && (p.revents & POLLHUP) != 0;
}

// Keeps the calling thread, and the threads it starts, on one CPU while it
// lives: a thread that is woken then usually runs before the waker finishes.
class OnOneCpu {
 public:
  OnOneCpu() {
    EXPECT_EQ(::sched_getaffinity(0, sizeof(saved_), &saved_), 0);
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(::sched_getcpu(), &one);
    EXPECT_EQ(::sched_setaffinity(0, sizeof(one), &one), 0);
  }
  ~OnOneCpu() { (void)::sched_setaffinity(0, sizeof(saved_), &saved_); }
  OnOneCpu(const OnOneCpu&) = delete;
  OnOneCpu& operator=(const OnOneCpu&) = delete;

 private:
  cpu_set_t saved_{};
};

// The fds a line brought that no handler took are closed before the close
// hooks run, so a hook (and whoever counts fds after it, like the rpc fuzz
// target) never finds one still open. The call is blocking and its params
// large: the worker that ran it spends a while freeing them, and when it
// freed the call's fds only after that, after the reply, the close hook,
// woken meanwhile on another worker (on the same CPU), found them open.
TEST(ServerFdHygiene, ReceivedFdsAreClosedBeforeTheCloseHookRuns) {
  MethodRegistry reg;
  ASSERT_TRUE(reg.Register(
      "look", [](CallContext&, const json&) -> HandlerResult { return Reply(json(true)); },
      {.blocking = true}));
  json pad = json::array();
  for (int i = 0; i < 200000; ++i) {
    pad.push_back(json::array());  // each one a heap block to free
  }
  OnOneCpu pinned;
  for (int session = 0; session < 3; ++session) {
    int ends[2] = {-1, -1};
    ASSERT_EQ(::pipe2(ends, O_CLOEXEC), 0);
    UniqueFd read_end(ends[0]);
    UniqueFd write_end(ends[1]);
    std::atomic<int> hooks{0};
    std::atomic<bool> open_in_hook{false};
    CloseHook hook = [&](ConnectionId, const PeerCredentials&) {
      open_in_hook = !WriteEndsClosed(read_end.get());
      ++hooks;
    };
    RunningServer server(reg, ServerConfig{.max_frame_bytes = 8 << 20, .worker_threads = 2},
                         {hook});
    RawPeer peer(server.socket_path());
    peer.WriteJson(wire::MakeRequest("look", json{{"fd", wire::FdRef(0)}, {"pad", pad}}, 1),
                   {write_end.get()});
    write_end.reset();
    ASSERT_EQ(::shutdown(peer.fd(), SHUT_WR), 0);
    EXPECT_EQ(peer.ReadJson()["result"], true);
    EXPECT_TRUE(peer.WaitEof());
    ASSERT_TRUE(Eventually([&] { return hooks.load() == 1; }));
    EXPECT_FALSE(open_in_hook.load()) << "session " << session;
  }
}

}  // namespace
}  // namespace vfiod::rpc
