#include "test_harness.h"

#include <dirent.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>

#include "proto/fd_passing.h"
#include "proto/jsonrpc.h"

namespace vfiod::rpc::testing {

TempDir::TempDir() {
  std::string tmpl = (std::filesystem::temp_directory_path() / "vfiod-rpc-XXXXXX").string();
  char* made = ::mkdtemp(tmpl.data());
  if (made == nullptr) {
    ADD_FAILURE() << "mkdtemp: " << std::strerror(errno);
  }
  path_ = tmpl;
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

RunningServer::RunningServer(const MethodRegistry& registry, ServerConfig config,
                             std::vector<CloseHook> hooks)
    : socket_path_(dir_.path() + "/s.sock") {
  server_ = std::make_unique<Server>(io_, registry, config);
  for (auto& hook : hooks) {
    server_->AddCloseHook(std::move(hook));
  }
  auto listening = server_->Listen(socket_path_, 0600);
  if (!listening) {
    ADD_FAILURE() << listening.error().message();
  }
  server_->Start();
  io_thread_ = std::thread([this] {
    auto guard = boost::asio::make_work_guard(io_);
    io_.run();
  });
}

RunningServer::~RunningServer() {
  server_->Stop();
  // Let the close hooks run before the io loop stops.
  Eventually([this] { return server_->connection_count() == 0; });
  io_.stop();
  io_thread_.join();
  server_.reset();
}

RawPeer::RawPeer(const std::string& path) {
  fd_.reset(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
  if (::connect(fd_.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) < 0) {
    ADD_FAILURE() << "connect " << path << ": " << std::strerror(errno);
  }
}

void RawPeer::Write(const std::string& bytes, const std::vector<int>& fds) {
  std::size_t done = 0;
  while (done < bytes.size()) {
    auto sent = wire::SendWithFds(fd_.get(), {bytes.data() + done, bytes.size() - done},
                                  done == 0 ? std::span<const int>(fds) : std::span<const int>());
    if (!sent) {
      ADD_FAILURE() << sent.error().message();
      return;
    }
    done += *sent;
  }
}

void RawPeer::WriteJson(const nlohmann::json& j, const std::vector<int>& fds) {
  Write(wire::ToLine(j), fds);
}

wire::Frame RawPeer::ReadFrame(std::chrono::milliseconds timeout) {
  std::vector<char> buf(1 << 16);
  while (!framer_.has_frame()) {
    pollfd p{fd_.get(), POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(timeout.count())) != 1) {
      return wire::Frame{"<timeout>", {}, false};
    }
    auto got = wire::RecvWithFds(fd_.get(), buf);
    if (!got || got->bytes == 0) {
      return wire::Frame{"<eof>", {}, false};
    }
    framer_.Feed({buf.data(), got->bytes}, std::move(got->fds), got->fds_truncated);
  }
  return framer_.Pop();
}

nlohmann::json RawPeer::ReadJson(std::chrono::milliseconds timeout) {
  wire::Frame f = ReadFrame(timeout);
  if (f.line == "<timeout>" || f.line == "<eof>") {
    return f.line;
  }
  return nlohmann::json::parse(f.line);
}

bool RawPeer::WaitEof(std::chrono::milliseconds timeout) {
  for (;;) {
    wire::Frame f = ReadFrame(timeout);
    if (f.line == "<eof>") {
      return true;
    }
    if (f.line == "<timeout>") {
      return false;
    }
  }
}

int CountOpenFds() {
  int count = 0;
  DIR* dir = ::opendir("/proc/self/fd");
  while (dirent* e = ::readdir(dir)) {
    count += e->d_name[0] != '.' ? 1 : 0;
  }
  ::closedir(dir);
  return count - 1;  // the directory's own fd
}

ssize_t SendWithAnyFdCount(int socket, std::string_view bytes, const std::vector<int>& fds) {
  const size_t fd_bytes = sizeof(int) * fds.size();
  std::vector<unsigned char> control(CMSG_SPACE(fd_bytes));
  std::string data(bytes);
  iovec iov{data.data(), data.size()};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control.data();
  msg.msg_controllen = control.size();
  cmsghdr* c = CMSG_FIRSTHDR(&msg);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(fd_bytes);
  std::memcpy(CMSG_DATA(c), fds.data(), fd_bytes);
  return ::sendmsg(socket, &msg, 0);
}

UniqueFd MakeMemfd(const std::string& content) {
  UniqueFd fd(::memfd_create("vfiod-test", MFD_CLOEXEC));
  EXPECT_TRUE(fd.valid());
  EXPECT_EQ(::pwrite(fd.get(), content.data(), content.size(), 0),
            static_cast<ssize_t>(content.size()));
  return fd;
}

std::string ReadAll(int fd) {
  std::string out(4096, '\0');
  ssize_t n = ::pread(fd, out.data(), out.size(), 0);
  out.resize(n < 0 ? 0 : static_cast<std::size_t>(n));
  return out;
}

}  // namespace vfiod::rpc::testing
