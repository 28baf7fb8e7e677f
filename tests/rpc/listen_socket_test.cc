#include "rpc/listen_socket.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <cstring>
#include <fstream>
#include <thread>

#include "proto/jsonrpc.h"
#include "rpc/server.h"
#include "test_harness.h"

namespace vfiod::rpc {
namespace {

using testing::TempDir;

TEST(ListenUnix, SetsModeAndGroup) {
  TempDir dir;
  std::string path = dir.path() + "/a.sock";
  auto fd = ListenUnix(path, 0660, ::getgid());
  ASSERT_TRUE(fd) << fd.error().message();
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 07777, 0660u);
  EXPECT_EQ(st.st_gid, ::getgid());
}

TEST(ListenUnix, ReplacesAStaleSocketButNotALiveOne) {
  TempDir dir;
  std::string path = dir.path() + "/a.sock";
  {
    auto first = ListenUnix(path, 0600, std::nullopt);
    ASSERT_TRUE(first);
    auto second = ListenUnix(path, 0600, std::nullopt);
    ASSERT_FALSE(second);
    EXPECT_EQ(second.error().code, EADDRINUSE);
  }  // first closes: its file stays behind, stale
  auto again = ListenUnix(path, 0600, std::nullopt);
  EXPECT_TRUE(again) << again.error().message();
}

TEST(ListenUnix, RefusesToReplaceARegularFileOrALongPath) {
  TempDir dir;
  std::string path = dir.path() + "/file";
  std::ofstream(path) << "keep me";
  auto fd = ListenUnix(path, 0600, std::nullopt);
  ASSERT_FALSE(fd);
  EXPECT_EQ(fd.error().code, EEXIST);
  auto long_path = ListenUnix(dir.path() + "/" + std::string(200, 'x'), 0600, std::nullopt);
  ASSERT_FALSE(long_path);
  EXPECT_EQ(long_path.error().code, ENAMETOOLONG);
}

TEST(AdoptListeningSocket, ChecksWhatItIsGiven) {
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
  UniqueFd keep(sv[1]);
  auto connected = AdoptListeningSocket(UniqueFd(sv[0]));
  ASSERT_FALSE(connected);
  EXPECT_EQ(connected.error().code, EINVAL);
  auto dgram = AdoptListeningSocket(UniqueFd(::socket(AF_UNIX, SOCK_DGRAM, 0)));
  ASSERT_FALSE(dgram);
  EXPECT_EQ(dgram.error().code, EPROTOTYPE);
  auto inet = AdoptListeningSocket(UniqueFd(::socket(AF_INET, SOCK_STREAM, 0)));
  ASSERT_FALSE(inet);
  EXPECT_EQ(inet.error().code, EAFNOSUPPORT);
  auto file = AdoptListeningSocket(UniqueFd(::open("/dev/null", O_RDONLY | O_CLOEXEC)));
  ASSERT_FALSE(file);
  EXPECT_EQ(file.error().code, ENOTSOCK);
}

TEST(Server, ServesAnAdoptedSocketAndStopClosesConnections) {
  TempDir dir;
  std::string path = dir.path() + "/act.sock";
  // Stands in for the fd systemd would pass: listening, blocking, inheritable.
  UniqueFd inherited(::socket(AF_UNIX, SOCK_STREAM, 0));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
  ASSERT_EQ(::bind(inherited.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ASSERT_EQ(::listen(inherited.get(), 8), 0);

  MethodRegistry reg;
  ASSERT_TRUE(reg.Register("ping", [](CallContext&, const nlohmann::json&) -> HandlerResult {
    return Reply(nlohmann::json("pong"));
  }));
  boost::asio::io_context io;
  Server server(io, reg);
  ASSERT_TRUE(server.Adopt(std::move(inherited)));
  server.Start();
  std::thread io_thread([&] {
    auto guard = boost::asio::make_work_guard(io);
    io.run();
  });
  {
    testing::RawPeer peer(path);
    peer.WriteJson(wire::MakeRequest("ping", nullptr, 1));
    EXPECT_EQ(peer.ReadJson()["result"], "pong");
    server.Stop();
    EXPECT_TRUE(peer.WaitEof());
  }
  EXPECT_TRUE(testing::Eventually([&] { return server.connection_count() == 0; }));
  io.stop();
  io_thread.join();
}

TEST(Server, StopRemovesTheSocketFile) {
  MethodRegistry reg;
  TempDir dir;
  std::string path = dir.path() + "/s.sock";
  boost::asio::io_context io;
  {
    Server server(io, reg);
    ASSERT_TRUE(server.Listen(path, 0600));
    server.Start();
    server.Stop();
    io.run();  // runs the posted stop to completion
  }
  EXPECT_NE(::access(path.c_str(), F_OK), 0);
}

}  // namespace
}  // namespace vfiod::rpc
