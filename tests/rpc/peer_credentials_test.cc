#include "rpc/peer_credentials.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>

#include "proto/unique_fd.h"

namespace vfiod::rpc {
namespace {

std::vector<gid_t> OwnGroups() {
  std::vector<gid_t> groups(static_cast<std::size_t>(::getgroups(0, nullptr)));
  groups.resize(
      static_cast<std::size_t>(::getgroups(static_cast<int>(groups.size()), groups.data())));
  std::sort(groups.begin(), groups.end());
  groups.erase(std::unique(groups.begin(), groups.end()), groups.end());
  return groups;
}

TEST(ParseStatusGroups, ReadsTheGroupsLine) {
  auto g = ParseStatusGroups("Name:\tx\nUid:\t0\nGroups:\t27 4 100 4 \nNgid:\t0\n");
  ASSERT_TRUE(g) << g.error().message();
  EXPECT_EQ(*g, (std::vector<gid_t>{4, 27, 100}));
  auto empty = ParseStatusGroups("Groups:\t\nX: 1\n");
  ASSERT_TRUE(empty);
  EXPECT_TRUE(empty->empty());
}

TEST(ParseStatusGroups, RejectsMissingOrGarbledLines) {
  auto missing = ParseStatusGroups("Name:\tx\nUid:\t0\n");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, EBADMSG);
  auto garbled = ParseStatusGroups("Groups:\t1 x2\n");
  ASSERT_FALSE(garbled);
  EXPECT_EQ(garbled.error().code, EBADMSG);
}

TEST(ReadProcGroups, MatchesGetgroups) {
  auto g = ReadProcGroups(::getpid());
  ASSERT_TRUE(g) << g.error().message();
  EXPECT_EQ(*g, OwnGroups());
}

TEST(ReadPeerCredentials, SocketPairSeesThisProcess) {
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  UniqueFd a(sv[0]);
  UniqueFd b(sv[1]);
  auto peer = ReadPeerCredentials(a.get());
  ASSERT_TRUE(peer) << peer.error().message();
  EXPECT_EQ(peer->uid, ::getuid());
  EXPECT_EQ(peer->gid, ::getgid());
  EXPECT_EQ(peer->pid, ::getpid());
  EXPECT_EQ(peer->groups, OwnGroups());
}

TEST(ReadPeerCredentials, NotASocketIsAnError) {
  UniqueFd null_fd(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  auto peer = ReadPeerCredentials(null_fd.get());
  ASSERT_FALSE(peer);
  EXPECT_EQ(peer.error().code, ENOTSOCK);
}

}  // namespace
}  // namespace vfiod::rpc
