// The client library's side of release requests (client/release.h) against a
// real in-process server: notices sent while no call runs reach
// PollNotifications, are parsed, and DeviceReleaser closes the device fds it
// keeps for the device asked for (after its BeforeClose), and no others.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <memory>
#include <mutex>

#include "client/release.h"
#include "client/vfiod_client.h"
#include "test_harness.h"

namespace vfiod::client {
namespace {

using nlohmann::json;
using rpc::CallContext;
using rpc::ConnectionInfo;
using rpc::HandlerResult;
using rpc::MethodRegistry;
using rpc::Reply;
using rpc::testing::RunningServer;

/// A server whose "hello" remembers the caller's connection, so the test can
/// send it notifications later, outside any call.
struct NoticeServer {
  NoticeServer() {
    EXPECT_TRUE(registry.Register("hello", [this](CallContext& ctx, const json&) -> HandlerResult {
      std::lock_guard lock(mu);
      conn = ctx.connection();
      return Reply(json::object());
    }));
    server = std::make_unique<RunningServer>(registry);
  }
  bool Send(const std::string& method, const json& params) {
    std::lock_guard lock(mu);
    auto c = conn.lock();
    return c && c->notify(wire::MakeRequest(method, params, std::nullopt));
  }

  MethodRegistry registry;
  std::mutex mu;
  std::weak_ptr<ConnectionInfo> conn;  // guarded by mu
  std::unique_ptr<RunningServer> server;
};

UniqueFd AnyFd() { return UniqueFd(::open("/dev/null", O_RDONLY | O_CLOEXEC)); }

bool IsOpen(int fd) { return ::fcntl(fd, F_GETFD) >= 0; }

TEST(ReleaseClientTest, ParsesBothNoticesAndNothingElse) {
  auto asked = ParseReleaseNotice(
      "device.release_requested",
      {{"bdf", "0000:00:03.0"}, {"container", 7}, {"grace_ms", 1500}, {"reason", "unbind"}});
  ASSERT_TRUE(asked);
  EXPECT_FALSE(asked->revoked);
  EXPECT_EQ(asked->bdf, "0000:00:03.0");
  EXPECT_EQ(asked->container, 7u);
  EXPECT_EQ(asked->grace_ms, 1500u);
  auto gone = ParseReleaseNotice("device.revoked", {{"bdf", "0000:00:03.0"},
                                                    {"container", 7},
                                                    {"unmapped_bytes", 4096},
                                                    {"mappings", {3, 4}},
                                                    {"reason", "over"}});
  ASSERT_TRUE(gone);
  EXPECT_TRUE(gone->revoked);
  EXPECT_EQ(gone->unmapped_bytes, 4096u);
  EXPECT_EQ(gone->mappings, (std::vector<uint64_t>{3, 4}));
  EXPECT_FALSE(ParseReleaseNotice("dma.progress", {{"done_bytes", 1}, {"total_bytes", 2}}));
  EXPECT_FALSE(ParseReleaseNotice("device.revoked", {{"bdf", 3}, {"container", 7}}));
  EXPECT_FALSE(ParseReleaseNotice("device.revoked", json::array()));
}

TEST(ReleaseClientTest, TheReleaserClosesTheDevicesFdsOnTheRequest) {
  NoticeServer server;
  auto c = Client::Connect(server.server->socket_path());
  ASSERT_TRUE(c.has_value());
  std::vector<std::string> before;
  DeviceReleaser releaser([&](const ReleaseNotice& n) { before.push_back(n.bdf); });
  std::vector<std::string> other;
  c->OnNotification(
      releaser.Handler([&](const std::string& method, const json&) { other.push_back(method); }));
  const int edu = releaser.Keep("0000:00:03.0", AnyFd());
  const int ivshmem = releaser.Keep("0000:00:04.0", AnyFd());
  ASSERT_TRUE(c->Call("hello").has_value());
  // Nothing sent yet: a poll that waits for nothing returns none.
  auto none = c->PollNotifications(std::chrono::milliseconds(0));
  ASSERT_TRUE(none.has_value());
  EXPECT_EQ(*none, 0u);

  ASSERT_TRUE(server.Send("dma.progress", {{"done_bytes", 1}, {"total_bytes", 2}}));
  ASSERT_TRUE(server.Send("device.release_requested",
                          {{"bdf", "0000:00:03.0"}, {"container", 2}, {"grace_ms", 0}}));
  size_t seen = 0;
  for (int i = 0; i < 100 && seen < 2; ++i) {  // a hang guard, not a timing assert
    auto n = c->PollNotifications(std::chrono::milliseconds(100));
    ASSERT_TRUE(n.has_value()) << n.error().Describe();
    seen += *n;
  }
  EXPECT_EQ(seen, 2u);
  EXPECT_EQ(other, std::vector<std::string>{"dma.progress"});
  EXPECT_EQ(before, std::vector<std::string>{"0000:00:03.0"});
  EXPECT_FALSE(IsOpen(edu));
  EXPECT_EQ(releaser.fd("0000:00:03.0"), -1);
  EXPECT_TRUE(IsOpen(ivshmem));
  EXPECT_EQ(releaser.fd("0000:00:04.0"), ivshmem);
  auto notices = releaser.TakeNotices();
  ASSERT_EQ(notices.size(), 1u);
  EXPECT_EQ(notices[0].container, 2u);
  EXPECT_TRUE(releaser.TakeNotices().empty());
  // Calls go on as before.
  EXPECT_TRUE(c->Call("hello").has_value());
}

}  // namespace
}  // namespace vfiod::client
