#include "proto/fd_passing.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/socket.h>

#include <cstring>

#include "proto/framing.h"
#include "test_harness.h"

namespace vfiod::wire {
namespace {

using rpc::testing::CountOpenFds;
using rpc::testing::MakeMemfd;
using rpc::testing::ReadAll;
using rpc::testing::SendWithAnyFdCount;

struct SocketPair {
  SocketPair() {
    int sv[2];
    EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    a.reset(sv[0]);
    b.reset(sv[1]);
  }
  UniqueFd a, b;
};

TEST(FdPassing, MemfdArrivesCloexecAndUsable) {
  SocketPair sp;
  UniqueFd mem = MakeMemfd("hello");
  int raw = mem.get();
  auto sent = SendWithFds(sp.a.get(), std::string_view("{}\n"), std::span<const int>(&raw, 1));
  ASSERT_TRUE(sent) << sent.error().message();
  EXPECT_EQ(*sent, 3u);
  char buf[16];
  auto got = RecvWithFds(sp.b.get(), buf);
  ASSERT_TRUE(got) << got.error().message();
  EXPECT_EQ(got->bytes, 3u);
  EXPECT_FALSE(got->fds_truncated);
  ASSERT_EQ(got->fds.size(), 1u);
  EXPECT_NE(got->fds[0].get(), raw);
  EXPECT_EQ(ReadAll(got->fds[0].get()), "hello");
  EXPECT_TRUE(::fcntl(got->fds[0].get(), F_GETFD) & FD_CLOEXEC);
}

TEST(FdPassing, QueuedMessagesKeepTheirFdsApart) {
  // B (no fds) and C (one fd) are both queued before the first read: the
  // framer must give the fd to C, whatever the kernel hands to each read.
  SocketPair sp;
  UniqueFd mem = MakeMemfd("for-C");
  int raw = mem.get();
  ASSERT_TRUE(SendWithFds(sp.a.get(), std::string_view("B1\nB2\n"), {}));
  ASSERT_TRUE(SendWithFds(sp.a.get(), std::string_view("C\n"), std::span<const int>(&raw, 1)));
  ASSERT_TRUE(SendWithFds(sp.a.get(), std::string_view("D\n"), {}));
  LineFramer framer(1024);
  std::vector<Frame> frames;
  char buf[4096];
  while (frames.size() < 4) {
    auto got = RecvWithFds(sp.b.get(), buf);
    ASSERT_TRUE(got && got->bytes > 0);
    framer.Feed({buf, got->bytes}, std::move(got->fds), got->fds_truncated);
    while (framer.has_frame()) {
      frames.push_back(framer.Pop());
    }
  }
  EXPECT_TRUE(frames[0].fds.empty());
  EXPECT_TRUE(frames[1].fds.empty());
  EXPECT_EQ(frames[2].line, "C");
  ASSERT_EQ(frames[2].fds.size(), 1u);
  EXPECT_EQ(ReadAll(frames[2].fds[0].get()), "for-C");
  EXPECT_TRUE(frames[3].fds.empty());
}

TEST(FdPassing, TooManyFdsAreTruncatedAndNoneLeak) {
  SocketPair sp;
  int before = CountOpenFds();
  constexpr int kCount = static_cast<int>(kMaxFdsPerMessage) + 8;
  {
    std::vector<UniqueFd> mems;
    std::vector<int> raw;
    for (int i = 0; i < kCount; ++i) {
      mems.push_back(MakeMemfd("m"));
      raw.push_back(mems.back().get());
    }
    ASSERT_EQ(SendWithAnyFdCount(sp.a.get(), "\n", raw), 1);
  }
  EXPECT_EQ(CountOpenFds(), before);  // our copies are closed; the kernel holds its own
  char buf[8];
  {
    auto got = RecvWithFds(sp.b.get(), buf);
    ASSERT_TRUE(got);
    EXPECT_TRUE(got->fds_truncated);
    EXPECT_LE(got->fds.size(), kMaxFdsPerMessage);
  }
  EXPECT_EQ(CountOpenFds(), before);
}

TEST(FdPassing, SendRejectsBadArguments) {
  SocketPair sp;
  std::vector<int> many(kMaxFdsPerMessage + 1, sp.a.get());
  auto too_many = SendWithFds(sp.a.get(), std::string_view("x"), many);
  ASSERT_FALSE(too_many);
  EXPECT_EQ(too_many.error().code, EINVAL);
  int one = sp.a.get();
  auto no_data = SendWithFds(sp.a.get(), std::string_view(), std::span<const int>(&one, 1));
  ASSERT_FALSE(no_data);
  EXPECT_EQ(no_data.error().code, EINVAL);
}

TEST(FdPassing, ClosedPeerIsEpipeNotSignal) {
  SocketPair sp;
  sp.b.reset();
  auto sent = SendWithFds(sp.a.get(), std::string_view("x\n"), {});
  ASSERT_FALSE(sent);
  EXPECT_EQ(sent.error().code, EPIPE);
}

TEST(FdPassing, SendPartsWritesThePartsInOrderInOneCall) {
  SocketPair sp;
  const std::string first = "{\"a\":1}\n";
  const std::string second = "{\"b\":2}\n";
  const std::span<const char> parts[] = {first, second};
  auto sent = SendParts(sp.a.get(), parts);
  ASSERT_TRUE(sent) << sent.error().message();
  EXPECT_EQ(*sent, first.size() + second.size());
  char buf[64];
  auto got = RecvWithFds(sp.b.get(), buf);
  ASSERT_TRUE(got);
  EXPECT_EQ(std::string(buf, got->bytes), first + second);
}

TEST(FdPassing, SendPartsRejectsNoneAndTooMany) {
  SocketPair sp;
  auto none = SendParts(sp.a.get(), {});
  ASSERT_FALSE(none);
  EXPECT_EQ(none.error().code, EINVAL);
  std::vector<std::span<const char>> many(kMaxSendParts + 1, std::string_view("x"));
  auto too_many = SendParts(sp.a.get(), many);
  ASSERT_FALSE(too_many);
  EXPECT_EQ(too_many.error().code, EINVAL);
}

}  // namespace
}  // namespace vfiod::wire
