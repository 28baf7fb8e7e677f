// NotifyWithFds and friends against FdStoreSupervisor's real datagram socket.
#include "lifecycle/notify.h"

#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <string>

#include "fd_store_supervisor.h"
#include "lifecycle/fd_name.h"
#include "support/open_fds.h"

namespace vfiod::lifecycle {
namespace {

using testing::FdStoreSupervisor;

UniqueFd Memfd(const char* name) { return UniqueFd(::memfd_create(name, MFD_CLOEXEC)); }

ino_t Inode(int fd) {
  struct stat st {};
  EXPECT_EQ(::fstat(fd, &st), 0);
  return st.st_ino;
}

class NotifyTest : public ::testing::TestWithParam<bool> {  // param: abstract socket
 protected:
  void SetUp() override {
    auto s = FdStoreSupervisor::Create(::testing::TempDir(), GetParam());
    ASSERT_TRUE(s) << s.error().message();
    supervisor_.emplace(std::move(*s));
  }
  FdStoreSupervisor& sup() { return *supervisor_; }
  std::optional<FdStoreSupervisor> supervisor_;
};

TEST_P(NotifyTest, PlainStateArrivesAsOneDatagram) {
  ASSERT_TRUE(NotifyTo(sup().notify_socket(), "READY=1\nSTATUS=serving"));
  ASSERT_EQ(sup().Pump(1000).value_or(-1), 1);
  EXPECT_EQ(sup().messages().at(0), "READY=1\nSTATUS=serving");
  EXPECT_TRUE(sup().store().empty());
}

TEST_P(NotifyTest, StoredFdsArriveUnderTheirNameAndRemoveDropsThemAll) {
  UniqueFd a = Memfd("a");
  UniqueFd b = Memfd("b");
  UniqueFd c = Memfd("c");
  const int ab[] = {a.get(), b.get()};
  const int cs[] = {c.get()};
  ASSERT_TRUE(NotifyTo(sup().notify_socket(), "FDSTORE=1\nFDNAME=c-7", ab));
  ASSERT_TRUE(NotifyTo(sup().notify_socket(), "FDSTORE=1\nFDNAME=m-9", cs));
  ASSERT_TRUE(sup().Pump(1000));
  ASSERT_TRUE(sup().Pump(100));
  auto named = sup().Named("c-7");
  ASSERT_EQ(named.size(), 2u);
  EXPECT_EQ(named[0]->ino, Inode(a.get()));
  EXPECT_EQ(named[1]->ino, Inode(b.get()));
  EXPECT_EQ(Inode(named[0]->fd.get()), Inode(a.get()));  // the same file, not a copy
  ASSERT_TRUE(NotifyTo(sup().notify_socket(), "FDSTOREREMOVE=1\nFDNAME=c-7"));
  ASSERT_EQ(sup().Pump(1000).value_or(-1), 1);
  EXPECT_TRUE(sup().Named("c-7").empty());
  EXPECT_EQ(sup().Named("m-9").size(), 1u);
}

INSTANTIATE_TEST_SUITE_P(PathAndAbstract, NotifyTest, ::testing::Bool());

TEST(NotifyArgs, RefusesWhatSystemdWouldRefuseBeforeSending) {
  auto s = FdStoreSupervisor::Create(::testing::TempDir());
  ASSERT_TRUE(s);
  const std::string path = s->notify_socket();
  UniqueFd m = Memfd("m");
  const int fds[] = {m.get()};
  const int before = testing::CountOpenFds();
  for (const std::string& state :
       {std::string("FDSTORE=1\nFDNAME=a:b"), std::string("FDSTORE=1\nFDNAME=tab\there"),
        std::string("FDSTORE=1\nFDNAME="), "FDSTORE=1\nFDNAME=" + std::string(256, 'x'),
        std::string("FDNAME=c-1")}) {  // last: fds without FDSTORE=1
    auto r = NotifyTo(path, state, fds);
    ASSERT_FALSE(r) << state;
    EXPECT_EQ(r.error().code, EINVAL) << state;
  }
  EXPECT_TRUE(NotifyTo(path, "FDSTORE=1\nFDNAME=" + std::string(255, 'x'), fds));
  EXPECT_EQ(NotifyTo(path, "").error().code, EINVAL);
  EXPECT_EQ(NotifyTo("relative/path", "READY=1").error().code, EINVAL);
  EXPECT_EQ(NotifyTo("@", "READY=1").error().code, EINVAL);
  EXPECT_EQ(NotifyTo("/" + std::string(120, 'p'), "READY=1").error().code, EINVAL);
  EXPECT_EQ(testing::CountOpenFds(), before);  // no socket left behind on any path
  ASSERT_EQ(s->Pump(1000).value_or(-1), 1);    // only the valid one went out
  EXPECT_EQ(s->Named(std::string(255, 'x')).size(), 1u);
}

TEST(NotifyArgs, NobodyListeningIsAnErrnoError) {
  const std::string path = ::testing::TempDir() + "/vfiod-no-such-notify-socket";
  auto r = NotifyTo(path, "READY=1");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ENOENT);
  EXPECT_EQ(NotifyTo("@vfiod-nobody-binds-this-name", "READY=1").error().code, ECONNREFUSED);
}

TEST(NotifyEnv, WithoutNotifySocketNothingIsSent) {
  const char* saved = std::getenv("NOTIFY_SOCKET");
  std::string keep = saved != nullptr ? saved : "";
  ::unsetenv("NOTIFY_SOCKET");
  auto r = NotifyWithFds("READY=1");
  ASSERT_TRUE(r);
  EXPECT_FALSE(*r);
  auto s = FdStoreSupervisor::Create(::testing::TempDir());
  ASSERT_TRUE(s);
  ::setenv("NOTIFY_SOCKET", s->notify_socket().c_str(), 1);
  UniqueFd m = Memfd("m");
  const int fds[] = {m.get()};
  EXPECT_TRUE(StoreFds("c-3", fds).value_or(false));
  EXPECT_EQ(StoreFds("bad:name", fds).error().code, EINVAL);
  EXPECT_EQ(StoreFds("c-4", {}).error().code, EINVAL);
  EXPECT_TRUE(RemoveFds("c-3").value_or(false));
  ASSERT_TRUE(s->Pump(1000));
  ASSERT_TRUE(s->Pump(100));
  EXPECT_EQ(s->messages().size(), 2u);
  EXPECT_TRUE(s->store().empty());
  if (saved != nullptr) {
    ::setenv("NOTIFY_SOCKET", keep.c_str(), 1);
  } else {
    ::unsetenv("NOTIFY_SOCKET");
  }
}

TEST(FdName, Rules) {
  EXPECT_TRUE(IsValidFdName("c-1"));
  EXPECT_TRUE(IsValidFdName("with space ~"));
  EXPECT_FALSE(IsValidFdName(""));
  EXPECT_FALSE(IsValidFdName("a:b"));
  EXPECT_FALSE(IsValidFdName("new\nline"));
  EXPECT_FALSE(IsValidFdName("\x7f"));
  EXPECT_FALSE(IsValidFdName("caf\xc3\xa9"));
  EXPECT_TRUE(IsValidFdName(std::string(255, 'a')));
  EXPECT_FALSE(IsValidFdName(std::string(256, 'a')));
}

}  // namespace
}  // namespace vfiod::lifecycle
