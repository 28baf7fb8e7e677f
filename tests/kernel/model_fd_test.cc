// Model fds are real fds: close-on-exec, and a device fd passed over a unix
// socket maps the same BAR memory in the receiver, without the model.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>

#include "model_fixture.h"

namespace vfiod::kernel::testing {
namespace {

using ModelFds = ModelFixture;

void SendFd(int sock, int fd) {
  char byte = 'x';
  iovec iov{&byte, 1};
  alignas(cmsghdr) char ctl[CMSG_SPACE(sizeof(int))] = {};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = ctl;
  msg.msg_controllen = sizeof ctl;
  cmsghdr* c = CMSG_FIRSTHDR(&msg);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int));
  std::memcpy(CMSG_DATA(c), &fd, sizeof fd);
  ASSERT_EQ(::sendmsg(sock, &msg, 0), 1);
}

int ReceiveFd(int sock) {
  char byte = 0;
  iovec iov{&byte, 1};
  alignas(cmsghdr) char ctl[CMSG_SPACE(sizeof(int))] = {};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = ctl;
  msg.msg_controllen = sizeof ctl;
  if (::recvmsg(sock, &msg, MSG_CMSG_CLOEXEC) != 1) {
    return -1;
  }
  int fd = -1;
  cmsghdr* c = CMSG_FIRSTHDR(&msg);
  if (c != nullptr && c->cmsg_type == SCM_RIGHTS) {
    std::memcpy(&fd, CMSG_DATA(c), sizeof fd);
  }
  return fd;
}

TEST_F(ModelFds, EveryFdIsCloseOnExec) {
  KernelFd dev = OpenEdu();
  for (int fd : {container_.get(), group_.get(), dev.get()}) {
    EXPECT_TRUE(::fcntl(fd, F_GETFD) & FD_CLOEXEC) << "fd " << fd;
  }
}

TEST_F(ModelFds, PassedDeviceFdMapsTheSameBar) {
  KernelFd dev = OpenEdu();
  auto region = GetRegionInfo(k_, dev.get(), kPciBar0RegionIndex);
  ASSERT_TRUE(region);
  const uint64_t bar_offset = region->offset;
  const uint64_t bar_size = region->size;
  uint32_t magic = 0x010000ed;
  ASSERT_TRUE(k_.pwrite(dev.get(), &magic, 4, static_cast<off_t>(bar_offset)));
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  SendFd(sv[0], dev.get());
  int received = ReceiveFd(sv[1]);
  ASSERT_GE(received, 0);
  void* p =
      ::mmap(nullptr, bar_size, PROT_READ, MAP_SHARED, received, static_cast<off_t>(bar_offset));
  ASSERT_NE(p, MAP_FAILED);
  uint32_t seen = 0;
  std::memcpy(&seen, p, 4);
  EXPECT_EQ(seen, magic);
  ::munmap(p, bar_size);
  ::close(received);
  ::close(sv[0]);
  ::close(sv[1]);
}

}  // namespace
}  // namespace vfiod::kernel::testing
