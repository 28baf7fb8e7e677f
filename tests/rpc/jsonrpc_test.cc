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

}  // namespace
}  // namespace vfiod::wire
