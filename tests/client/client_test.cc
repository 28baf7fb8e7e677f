#include <gtest/gtest.h>
#include <poll.h>
#include <unistd.h>

#include <condition_variable>
#include <mutex>

#include "client/vfiod_client.h"
#include "proto/errors.h"
#include "test_harness.h"

namespace vfiod::client {
namespace {

using nlohmann::json;
using rpc::CallContext;
using rpc::HandlerResult;
using rpc::MethodRegistry;
using rpc::Reply;
using rpc::testing::MakeMemfd;
using rpc::testing::ReadAll;
using rpc::testing::RunningServer;

class Gate {
 public:
  void Wait() {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [this] { return open_; });
  }
  void Open() {
    std::lock_guard lock(mu_);
    open_ = true;
    cv_.notify_all();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool open_ = false;
};

MethodRegistry ClientRegistry(Gate& gate) {
  MethodRegistry reg;
  EXPECT_TRUE(reg.Register(
      "ping", [](CallContext&, const json&) -> HandlerResult { return Reply(json("pong")); }));
  EXPECT_TRUE(reg.Register("write_into", [](CallContext& ctx, const json& p) -> HandlerResult {
    auto fd = ctx.TakeFd(wire::AsFdRef(p.at("target")).value());
    if (!fd) {
      return std::unexpected(wire::MakeError(fd.error(), wire::kFdError));
    }
    std::string text = p.at("text");
    EXPECT_EQ(::pwrite(fd->get(), text.data(), text.size(), 0), static_cast<ssize_t>(text.size()));
    return Reply(json(true));
  }));
  EXPECT_TRUE(reg.Register("make_memfd",
                           [](CallContext&, const json& p) -> HandlerResult {
                             std::vector<UniqueFd> fds;
                             fds.push_back(MakeMemfd(p.at("text")));
                             return Reply(json{{"memfd", wire::FdRef(0)}}, std::move(fds));
                           },
                           {.reply_fds = 1}));
  EXPECT_TRUE(reg.Register("progress",
                           [](CallContext& ctx, const json& p) -> HandlerResult {
                             for (int i = 0; i < p.at("steps").get<int>(); ++i) {
                               ctx.Notify("progress", json{{"step", i}});
                             }
                             return Reply(json("finished"));
                           },
                           {.blocking = true}));
  EXPECT_TRUE(reg.Register("slow",
                           [&gate](CallContext&, const json&) -> HandlerResult {
                             gate.Wait();
                             return Reply(json("slow-done"));
                           },
                           {.blocking = true}));
  return reg;
}

class ClientTest : public ::testing::Test {
 protected:
  // A failed assertion must not leave a handler blocked: the server's
  // destructor joins the worker pool.
  void TearDown() override { gate_.Open(); }

  Client Connect() {
    auto c = Client::Connect(server_.socket_path());
    EXPECT_TRUE(c) << c.error().message();
    return std::move(*c);
  }

  Gate gate_;
  MethodRegistry registry_ = ClientRegistry(gate_);
  RunningServer server_{registry_, rpc::ServerConfig{.max_frame_bytes = 8192}};
};

TEST_F(ClientTest, CallReturnsTheResult) {
  Client c = Connect();
  auto r = c.Call("ping");
  ASSERT_TRUE(r) << r.error().Describe();
  EXPECT_EQ(r->result, "pong");
  EXPECT_TRUE(r->fds.empty());
}

TEST_F(ClientTest, ServerErrorsComeBackWithCodeAndData) {
  Client c = Connect();
  auto r = c.Call("no.such", json::object());
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, wire::kMethodNotFound);
  EXPECT_EQ(r.error().message, "Method not found");
  EXPECT_NE(r.error().data["detail"].get<std::string>().find("no.such"), std::string::npos);
}

TEST_F(ClientTest, SendsAnFdTheServerWritesThrough) {
  Client c = Connect();
  UniqueFd mem = MakeMemfd("");
  int raw = mem.get();
  auto r = c.Call("write_into", json{{"target", wire::FdRef(0)}, {"text", "via-client"}},
                  std::span<const int>(&raw, 1));
  ASSERT_TRUE(r) << r.error().Describe();
  EXPECT_EQ(ReadAll(mem.get()), "via-client");
}

TEST_F(ClientTest, ReceivesAnFd) {
  Client c = Connect();
  auto r = c.Call("make_memfd", json{{"text", "for-you"}});
  ASSERT_TRUE(r) << r.error().Describe();
  auto index = wire::AsFdRef(r->result["memfd"]);
  ASSERT_TRUE(index);
  ASSERT_LT(*index, r->fds.size());
  EXPECT_EQ(ReadAll(r->fds[*index].get()), "for-you");
}

TEST_F(ClientTest, NotificationsReachTheHandlerBeforeTheResult) {
  Client c = Connect();
  std::vector<int> steps;
  c.OnNotification([&](const std::string& method, const json& params) {
    EXPECT_EQ(method, "progress");
    steps.push_back(params["step"]);
  });
  auto r = c.Call("progress", json{{"steps", 4}});
  ASSERT_TRUE(r) << r.error().Describe();
  EXPECT_EQ(r->result, "finished");
  EXPECT_EQ(steps, (std::vector<int>{0, 1, 2, 3}));
}

TEST_F(ClientTest, BatchGivesEachCallItsOwnResultAndFds) {
  Client c = Connect();
  auto r = c.Batch({{"make_memfd", json{{"text", "one"}}},
                    {"ping", nullptr, /*notification=*/true},
                    {"no.such", json::object()},
                    {"make_memfd", json{{"text", "two"}}}});
  ASSERT_TRUE(r) << r.error().Describe();
  ASSERT_EQ(r->size(), 3u);
  ASSERT_TRUE((*r)[0]);
  ASSERT_EQ((*r)[0]->fds.size(), 1u);
  EXPECT_EQ((*r)[0]->result["memfd"], wire::FdRef(0));
  EXPECT_EQ(ReadAll((*r)[0]->fds[0].get()), "one");
  ASSERT_FALSE((*r)[1]);
  EXPECT_EQ((*r)[1].error().code, wire::kMethodNotFound);
  ASSERT_TRUE((*r)[2]);
  ASSERT_EQ((*r)[2]->fds.size(), 1u);
  EXPECT_EQ((*r)[2]->result["memfd"], wire::FdRef(0));  // renumbered from the line's 1
  EXPECT_EQ(ReadAll((*r)[2]->fds[0].get()), "two");
}

TEST_F(ClientTest, OnlyNotificationsBatchReturnsNothing) {
  Client c = Connect();
  auto r = c.Batch({{"ping", nullptr, true}});
  ASSERT_TRUE(r);
  EXPECT_TRUE(r->empty());
  EXPECT_TRUE(c.Notify("ping"));
  EXPECT_EQ(c.Call("ping")->result, "pong");
}

TEST_F(ClientTest, TimeoutThenTheLateReplyIsDropped) {
  Client c = Connect();
  auto r = c.Call("slow", nullptr, {}, std::chrono::milliseconds(50));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, wire::kClientTimeout);
  gate_.Open();
  pollfd p{c.fd(), POLLIN, 0};
  ASSERT_EQ(::poll(&p, 1, 10000), 1);  // the late reply is waiting now
  auto next = c.Call("ping");
  ASSERT_TRUE(next) << next.error().Describe();
  EXPECT_EQ(next->result, "pong");
}

TEST_F(ClientTest, OversizedRequestIsReportedThenTheConnectionIsGone) {
  Client c = Connect();
  auto r = c.Call("ping", json{{"pad", std::string(10000, 'x')}});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, wire::kFrameTooLarge);
  auto after = c.Call("ping");
  ASSERT_FALSE(after);
  EXPECT_EQ(after.error().code, wire::kClientTransport);
}

TEST(ClientConnect, MissingSocketIsAnErrnoError) {
  auto c = Client::Connect("/nonexistent-dir/vfiod.sock");
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().code, ENOENT);
  auto too_long = Client::Connect(std::string(200, 'a'));
  ASSERT_FALSE(too_long);
  EXPECT_EQ(too_long.error().code, ENAMETOOLONG);
}

}  // namespace
}  // namespace vfiod::client
