// JSON-RPC conformance of the server over a real socket.
#include <gtest/gtest.h>

#include <stdexcept>

#include "proto/errors.h"
#include "test_harness.h"

namespace vfiod::rpc {
namespace {

using nlohmann::json;
using testing::RawPeer;
using testing::RunningServer;

MethodRegistry ProtocolRegistry() {
  MethodRegistry reg;
  EXPECT_TRUE(reg.Register(
      "ping", [](CallContext&, const json&) -> HandlerResult { return Reply(json("pong")); }));
  EXPECT_TRUE(
      reg.Register("echo", [](CallContext&, const json& p) -> HandlerResult { return Reply(p); }));
  EXPECT_TRUE(reg.Register("sum",
                           [](CallContext&, const json& p) -> HandlerResult {
                             return Reply(p[0].get<int>() + p[1].get<int>());
                           },
                           {.allow_array_params = true}));
  EXPECT_TRUE(reg.Register("fail", [](CallContext&, const json&) -> HandlerResult {
    return std::unexpected(wire::MakeError(Error{ENOSPC, "VFIO_IOMMU_MAP_DMA", "no room"}));
  }));
  EXPECT_TRUE(reg.Register("throw", [](CallContext&, const json& p) -> HandlerResult {
    return Reply(p.at("missing"));  // throws json::out_of_range
  }));
  return reg;
}

json Req(const std::string& method, json params, json id) {
  return wire::MakeRequest(method, params, std::move(id));
}

int ErrorCode(const json& reply) { return reply.at("error").at("code").get<int>(); }

class ServerProtocol : public ::testing::Test {
 protected:
  MethodRegistry registry_ = ProtocolRegistry();
  RunningServer server_{registry_, ServerConfig{.max_frame_bytes = 4096}};
  RawPeer peer_{server_.socket_path()};
};

TEST_F(ServerProtocol, PingAnswersWithTheSameId) {
  peer_.WriteJson(Req("ping", nullptr, "abc"));
  json reply = peer_.ReadJson();
  EXPECT_EQ(reply, json::parse(R"({"jsonrpc":"2.0","result":"pong","id":"abc"})"));
}

TEST_F(ServerProtocol, MalformedJsonIsAParseErrorAndTheConnectionLives) {
  peer_.Write("{\"jsonrpc\":\"2.0\",\"method\":\n");
  json reply = peer_.ReadJson();
  EXPECT_EQ(ErrorCode(reply), wire::kParseError);
  EXPECT_TRUE(reply["id"].is_null());
  peer_.WriteJson(Req("ping", nullptr, 2));
  EXPECT_EQ(peer_.ReadJson()["result"], "pong");
}

TEST_F(ServerProtocol, TooDeepNestingIsAParseError) {
  peer_.Write(std::string(100, '[') + std::string(100, ']') + "\n");
  EXPECT_EQ(ErrorCode(peer_.ReadJson()), wire::kParseError);
  peer_.WriteJson(Req("ping", nullptr, 3));
  EXPECT_EQ(peer_.ReadJson()["result"], "pong");
}

TEST_F(ServerProtocol, OversizedFrameIsReportedThenTheConnectionCloses) {
  peer_.Write(std::string(5000, ' '));  // no newline yet: past the 4096 limit
  json reply = peer_.ReadJson();
  EXPECT_EQ(ErrorCode(reply), wire::kFrameTooLarge);
  EXPECT_TRUE(reply["id"].is_null());
  EXPECT_TRUE(peer_.WaitEof());
  RawPeer other(server_.socket_path());  // the server itself is fine
  other.WriteJson(Req("ping", nullptr, 1));
  EXPECT_EQ(other.ReadJson()["result"], "pong");
}

TEST_F(ServerProtocol, BatchIsAnsweredAsAnArrayWithoutNotifications) {
  json batch =
      json::array({Req("ping", nullptr, 1), wire::MakeRequest("ping", nullptr, std::nullopt),
                   Req("nope", nullptr, 2), json(5), Req("echo", json{{"k", 1}}, 3)});
  peer_.WriteJson(batch);
  json reply = peer_.ReadJson();
  ASSERT_TRUE(reply.is_array()) << reply;
  ASSERT_EQ(reply.size(), 4u);
  EXPECT_EQ(reply[0]["result"], "pong");
  EXPECT_EQ(ErrorCode(reply[1]), wire::kMethodNotFound);
  EXPECT_EQ(reply[1]["id"], 2);
  EXPECT_EQ(ErrorCode(reply[2]), wire::kInvalidRequest);
  EXPECT_TRUE(reply[2]["id"].is_null());
  EXPECT_EQ(reply[3]["result"], (json{{"k", 1}}));
}

TEST_F(ServerProtocol, EmptyBatchIsInvalid) {
  peer_.Write("[]\n");
  json reply = peer_.ReadJson();
  ASSERT_TRUE(reply.is_object());
  EXPECT_EQ(ErrorCode(reply), wire::kInvalidRequest);
}

TEST_F(ServerProtocol, NotificationsGetNoReply) {
  peer_.WriteJson(wire::MakeRequest("ping", nullptr, std::nullopt));
  peer_.WriteJson(wire::MakeRequest("nope", nullptr, std::nullopt));
  peer_.WriteJson(json::array({wire::MakeRequest("ping", nullptr, std::nullopt)}));
  peer_.WriteJson(Req("ping", nullptr, 9));
  json reply = peer_.ReadJson();
  EXPECT_EQ(reply["id"], 9);  // nothing came before it
  EXPECT_EQ(peer_.ReadJson(std::chrono::milliseconds(200)), "<timeout>");
}

TEST_F(ServerProtocol, WrongVersionIsInvalidRequest) {
  peer_.WriteJson(json{{"jsonrpc", "1.0"}, {"method", "ping"}, {"id", 4}});
  json reply = peer_.ReadJson();
  EXPECT_EQ(ErrorCode(reply), wire::kInvalidRequest);
  EXPECT_EQ(reply["id"], 4);
}

TEST_F(ServerProtocol, NonStructuredParamsAreInvalidRequestAndArraysInvalidParams) {
  peer_.WriteJson(json{{"jsonrpc", "2.0"}, {"method", "echo"}, {"params", 3}, {"id", 1}});
  EXPECT_EQ(ErrorCode(peer_.ReadJson()), wire::kInvalidRequest);
  peer_.WriteJson(Req("echo", json::array({1}), 2));
  EXPECT_EQ(ErrorCode(peer_.ReadJson()), wire::kInvalidParams);
  peer_.WriteJson(Req("sum", json::array({2, 3}), 3));
  EXPECT_EQ(peer_.ReadJson()["result"], 5);
}

TEST_F(ServerProtocol, UnknownMethod) {
  peer_.WriteJson(Req("no.such", json::object(), 1));
  json reply = peer_.ReadJson();
  EXPECT_EQ(ErrorCode(reply), wire::kMethodNotFound);
  EXPECT_NE(reply["error"]["data"]["detail"].get<std::string>().find("no.such"), std::string::npos);
}

TEST_F(ServerProtocol, HandlerErrorsCarryErrnoData) {
  peer_.WriteJson(Req("fail", nullptr, 1));
  json reply = peer_.ReadJson();
  EXPECT_EQ(ErrorCode(reply), wire::kKernelError);
  EXPECT_EQ(reply["error"]["data"]["errno"], ENOSPC);
  EXPECT_EQ(reply["error"]["data"]["errno_name"], "ENOSPC");
}

TEST_F(ServerProtocol, ThrowingHandlerIsAnInternalError) {
  peer_.WriteJson(Req("throw", json::object(), 1));
  EXPECT_EQ(ErrorCode(peer_.ReadJson()), wire::kInternalError);
  peer_.WriteJson(Req("ping", nullptr, 2));
  EXPECT_EQ(peer_.ReadJson()["result"], "pong");
}

TEST_F(ServerProtocol, BlankLinesAreIgnoredAndCrLfTolerated) {
  peer_.Write("\n  \n{\"jsonrpc\":\"2.0\",\"method\":\"ping\",\"id\":1}\r\n");
  EXPECT_EQ(peer_.ReadJson()["result"], "pong");
}

TEST(MethodRegistry, RegisterListAndDuplicates) {
  MethodRegistry reg = ProtocolRegistry();
  EXPECT_EQ(reg.Names(), (std::vector<std::string>{"echo", "fail", "ping", "sum", "throw"}));
  auto dup =
      reg.Register("ping", [](CallContext&, const json&) -> HandlerResult { return Reply(); });
  ASSERT_FALSE(dup);
  EXPECT_EQ(dup.error().code, EEXIST);
  auto empty = reg.Register("", nullptr);
  ASSERT_FALSE(empty);
  EXPECT_EQ(empty.error().code, EINVAL);
}

}  // namespace
}  // namespace vfiod::rpc
