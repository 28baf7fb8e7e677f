#include "rpc/request.h"

#include <gtest/gtest.h>

namespace vfiod::rpc {
namespace {

using nlohmann::json;

TEST(ParseRequest, AcceptsAFullRequest) {
  auto r = ParseRequest(json::parse(R"({"jsonrpc":"2.0","method":"m","params":{"a":1},"id":"x"})"));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->method, "m");
  EXPECT_EQ(r->params["a"], 1);
  EXPECT_EQ(*r->id, "x");
}

TEST(ParseRequest, NoIdIsANotificationAndNullIdIsNot) {
  auto note = ParseRequest(json::parse(R"({"jsonrpc":"2.0","method":"m"})"));
  ASSERT_TRUE(note);
  EXPECT_FALSE(note->id.has_value());
  EXPECT_EQ(note->params, json::object());
  auto null_id = ParseRequest(json::parse(R"({"jsonrpc":"2.0","method":"m","id":null})"));
  ASSERT_TRUE(null_id);
  EXPECT_TRUE(null_id->id.has_value());
}

struct Bad {
  const char* text;
  json answer_id;
};

TEST(ParseRequest, RejectsInvalidShapesWithTheRightId) {
  const Bad cases[] = {
      {R"(1)", nullptr},
      {R"({"jsonrpc":"1.0","method":"m","id":4})", 4},
      {R"({"method":"m","id":4})", 4},
      {R"({"jsonrpc":"2.0","method":7,"id":"a"})", "a"},
      {R"({"jsonrpc":"2.0","id":"a"})", "a"},
      {R"({"jsonrpc":"2.0","method":"m","params":3,"id":5})", 5},
      {R"({"jsonrpc":"2.0","method":"m","params":"s","id":5})", 5},
      {R"({"jsonrpc":"2.0","method":"m","id":{"x":1}})", nullptr},
      {R"({"jsonrpc":"2.0","method":"m","id":1.5})", nullptr},
      {R"({"jsonrpc":"2.0","method":"m","id":1,"extra":true})", 1},
  };
  for (const Bad& c : cases) {
    auto r = ParseRequest(json::parse(c.text));
    ASSERT_FALSE(r) << c.text;
    EXPECT_EQ(r.error().error.code, wire::kInvalidRequest) << c.text;
    EXPECT_EQ(r.error().id, c.answer_id) << c.text;
  }
}

}  // namespace
}  // namespace vfiod::rpc
