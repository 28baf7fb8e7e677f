#include "proto/jsonrpc.h"

#include <gtest/gtest.h>

namespace vfiod::wire {
namespace {

using nlohmann::json;

TEST(FdRefs, RecognisesOnlyExactReferences) {
  EXPECT_EQ(AsFdRef(FdRef(3)), 3u);
  EXPECT_EQ(AsFdRef(json{{"fd", -1}}), std::nullopt);
  EXPECT_EQ(AsFdRef(json{{"fd", "0"}}), std::nullopt);
  EXPECT_EQ(AsFdRef(json{{"fd", 0}, {"x", 1}}), std::nullopt);
  EXPECT_EQ(AsFdRef(json::array({0})), std::nullopt);
}

TEST(FdRefs, CollectAndOffsetWalkTheWholeDocument) {
  json j = {{"a", FdRef(0)}, {"b", json::array({FdRef(2), {{"c", FdRef(1)}}})}, {"fd", 7}};
  EXPECT_EQ(CollectFdRefs(j), (std::vector<std::size_t>{0, 2, 1}));
  OffsetFdRefs(j, 5);
  EXPECT_EQ(CollectFdRefs(j), (std::vector<std::size_t>{5, 7, 6}));
  EXPECT_EQ(j["fd"], 7);  // a plain member named fd beside others is no reference
}

TEST(RpcErrors, ErrnoErrorCarriesNameAndDetail) {
  RpcError e = MakeError(Error{EBUSY, "VFIO_GROUP_SET_CONTAINER", "group in use"});
  EXPECT_EQ(e.code, kKernelError);
  EXPECT_EQ(e.message, "Kernel error");
  EXPECT_EQ(e.data["errno"], EBUSY);
  EXPECT_EQ(e.data["errno_name"], "EBUSY");
  EXPECT_EQ(e.data["detail"], "VFIO_GROUP_SET_CONTAINER: group in use");
  EXPECT_NE(e.Describe().find("EBUSY"), std::string::npos);
}

TEST(RpcErrors, RoundTripThroughJson) {
  RpcError e = MakeError(kQuotaExceeded, "2 MiB over");
  auto back = ParseError(e.ToJson());
  ASSERT_TRUE(back);
  EXPECT_EQ(back->code, kQuotaExceeded);
  EXPECT_EQ(back->message, "Quota exceeded");
  EXPECT_EQ(back->data["detail"], "2 MiB over");
  EXPECT_FALSE(ParseError(json{{"code", "x"}, {"message", "m"}}));
  EXPECT_FALSE(ParseError(json::array()));
}

TEST(RpcErrors, ErrnoNames) {
  EXPECT_EQ(ErrnoName(EINVAL), "EINVAL");
  EXPECT_EQ(ErrnoName(ENOSPC), "ENOSPC");
  EXPECT_EQ(ErrnoName(9999), "E?9999");
}

TEST(Messages, RequestShapes) {
  json req = MakeRequest("ping", nullptr, json(1));
  EXPECT_EQ(req, json::parse(R"({"jsonrpc":"2.0","method":"ping","id":1})"));
  json note = MakeRequest("progress", json{{"done", 1}}, std::nullopt);
  EXPECT_FALSE(note.contains("id"));
  EXPECT_EQ(ToLine(json{{"a", "b"}}), "{\"a\":\"b\"}\n");
}

TEST(Messages, ToLineNeverThrowsOnBadUtf8) {
  std::string line = ToLine(json(std::string("\xff\xfe")));
  EXPECT_EQ(line.back(), '\n');
  EXPECT_EQ(line.find('\n'), line.size() - 1);
}

TEST(Messages, ResultTextIsSplicedToTheSameBytesAsAParsedResult) {
  const std::string text = R"({"methods":[{"name":"a\"b"}],"n":[1,2.5,null],"openrpc":"1.2.6"})";
  for (const json& id : {json(7), json("x\"y"), json(nullptr)}) {
    EXPECT_EQ(ToLine(MakeResult(id, nullptr), text), ToLine(MakeResult(id, json::parse(text))));
    std::string bare = ToLine(MakeResult(id, nullptr), text, /*newline=*/false);
    EXPECT_EQ(bare + "\n", ToLine(MakeResult(id, json::parse(text))));
  }
  // Not the reply shape it expects: still correct, by the general path.
  json other = {{"jsonrpc", "2.0"}, {"id", 1}, {"result", nullptr}, {"zz", 1}};
  json expected = other;
  expected["result"] = json::parse(text);
  EXPECT_EQ(ToLine(other, text), ToLine(expected));
}

TEST(RpcErrors, LimitErrorNamesTheLimit) {
  RpcError e = MakeLimitError("max_clients_per_user", "too many");
  EXPECT_EQ(e.code, kBusy);
  EXPECT_EQ(e.data["limit"], "max_clients_per_user");
  EXPECT_EQ(e.data["detail"], "too many");
}

// nlohmann's parser stops at a NUL byte as if the input ended there: the
// reason the server refuses any line holding one before parsing it.
TEST(Messages, NlohmannTakesANulByteForTheEndOfInput) {
  std::string line = std::string(R"({"jsonrpc":"2.0","id":1,"method":"ping"})") + '\0' + "junk";
  json doc = json::parse(line, nullptr, false);
  EXPECT_FALSE(doc.is_discarded()) << "nlohmann now refuses it: the server's check stays anyway";
  json trailing = json::parse(R"({"a":1} x)", nullptr, false);
  EXPECT_TRUE(trailing.is_discarded());  // strict parsing refuses trailing text
}

}  // namespace
}  // namespace vfiod::wire
