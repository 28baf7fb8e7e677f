#include "proto/framing.h"

#include <gtest/gtest.h>

#include "test_harness.h"

namespace vfiod::wire {
namespace {

using rpc::testing::MakeMemfd;

std::vector<UniqueFd> Memfds(int n) {
  std::vector<UniqueFd> fds;
  for (int i = 0; i < n; ++i) {
    fds.push_back(MakeMemfd("x" + std::to_string(i)));
  }
  return fds;
}

TEST(LineFramer, SplitsLinesAcrossReads) {
  LineFramer f(100);
  f.Feed("{\"a\":", {}, false);
  EXPECT_FALSE(f.has_frame());
  EXPECT_EQ(f.partial_bytes(), 5u);
  f.Feed("1}\n{\"b\":2}\n{\"c\"", {}, false);
  ASSERT_TRUE(f.has_frame());
  EXPECT_EQ(f.Pop().line, "{\"a\":1}");
  ASSERT_TRUE(f.has_frame());
  EXPECT_EQ(f.Pop().line, "{\"b\":2}");
  EXPECT_FALSE(f.has_frame());
  f.Feed(":3}\n", {}, false);
  EXPECT_EQ(f.Pop().line, "{\"c\":3}");
}

TEST(LineFramer, FdsGoToTheLastLineStartedInTheRead) {
  LineFramer f(100);
  // The read finishes line A, then B and C start in it: C gets the fds.
  f.Feed("A-head", {}, false);
  f.Feed("A-tail\nB\nC-head", Memfds(2), false);
  f.Feed("C-tail\n", {}, false);
  Frame a = f.Pop();
  Frame b = f.Pop();
  Frame c = f.Pop();
  EXPECT_EQ(a.line, "A-headA-tail");
  EXPECT_TRUE(a.fds.empty());
  EXPECT_TRUE(b.fds.empty());
  EXPECT_EQ(c.line, "C-headC-tail");
  ASSERT_EQ(c.fds.size(), 2u);
  EXPECT_EQ(rpc::testing::ReadAll(c.fds[1].get()), "x1");
  EXPECT_EQ(f.stray_fds(), 0u);
}

TEST(LineFramer, FdsOfAReadThatStartsNoLineAreClosed) {
  LineFramer f(100);
  int before = rpc::testing::CountOpenFds();
  {
    auto fds = Memfds(3);
    f.Feed("partial", {}, false);
    f.Feed("-more", std::move(fds), false);
  }
  EXPECT_EQ(f.stray_fds(), 3u);
  EXPECT_EQ(rpc::testing::CountOpenFds(), before);
  f.Feed("\n", {}, false);
  EXPECT_TRUE(f.Pop().fds.empty());
}

TEST(LineFramer, LineEndingExactlyAtReadEndLetsTheNextReadStartALine) {
  LineFramer f(100);
  f.Feed("one\n", {}, false);
  f.Feed("two\n", Memfds(1), false);
  EXPECT_TRUE(f.Pop().fds.empty());
  EXPECT_EQ(f.Pop().fds.size(), 1u);
}

TEST(LineFramer, TruncatedControlDataMarksTheLine) {
  LineFramer f(100);
  f.Feed("{}\n", Memfds(1), true);
  Frame fr = f.Pop();
  EXPECT_TRUE(fr.fd_error);
}

TEST(LineFramer, OverflowStopsTheStream) {
  LineFramer f(8);
  f.Feed("12345678\n", {}, false);
  EXPECT_EQ(f.Pop().line, "12345678");
  f.Feed("1234", {}, false);
  EXPECT_FALSE(f.overflowed());
  f.Feed("56789", {}, false);
  EXPECT_TRUE(f.overflowed());
  f.Feed("\n{}\n", Memfds(1), false);
  EXPECT_FALSE(f.has_frame());
  EXPECT_EQ(f.stray_fds(), 1u);
}

TEST(JsonNestingDepth, CountsBracketsOutsideStrings) {
  EXPECT_EQ(JsonNestingDepth("1"), 0u);
  EXPECT_EQ(JsonNestingDepth("{\"a\":[1,{\"b\":[]}]}"), 4u);
  EXPECT_EQ(JsonNestingDepth("{\"a\":\"[[[[\\\"[[\"}"), 1u);
  EXPECT_EQ(JsonNestingDepth(std::string(100, '[')), 100u);
}

TEST(OutlineJson, CountsTopLevelArrayElementsOutsideStrings) {
  EXPECT_EQ(OutlineJson("[]").array_elements, 0u);
  EXPECT_EQ(OutlineJson(" [ ] ").array_elements, 0u);
  EXPECT_EQ(OutlineJson("[1]").array_elements, 1u);
  EXPECT_EQ(OutlineJson(R"([{"a":[1,2,3]},{"b":"x,y,]"},[4,5]])").array_elements, 3u);
  EXPECT_EQ(OutlineJson(R"({"a":[1,2]})").array_elements, 0u);  // not an array
  EXPECT_EQ(OutlineJson(R"("[1,2]")").array_elements, 0u);      // a string
  std::string batch = "[";
  for (int i = 0; i < 5000; ++i) {
    batch += std::string(i == 0 ? "" : ",") + R"({"jsonrpc":"2.0","id":1,"method":"ping"})";
  }
  batch += "]";
  JsonOutline outline = OutlineJson(batch);
  EXPECT_EQ(outline.array_elements, 5000u);
  EXPECT_EQ(outline.depth, 2u);
}

}  // namespace
}  // namespace vfiod::wire
