// vfiod under FdStoreSupervisor, as under systemd with a socket unit and
// FileDescriptorStoreMax=: it serves the socket it is passed (LISTEN_FDS),
// each container's fd reaches the store as c-<id> (its groups' as
// g-<id>-<group>) and leaves it on destroy, a state record (vfiod-state-N)
// follows every change, a SIGKILLed vfiod's container fds stay in the store,
// and (the service's re-adoption not being there yet) the next vfiod drops
// what the record describes and removes what it does not.
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>

#include <chrono>
#include <thread>

#include "daemon_harness.h"
#include "fd_store_supervisor.h"

namespace vfiod::itest {
namespace {

using testing::FdStoreSupervisor;

class DaemonFdStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (InVm()) {
      GTEST_SKIP() << "host test (model kernel)";
    }
    std::string tmpl = (fs::temp_directory_path() / "vfiod-fdstore-XXXXXX").string();
    dir_ = ::mkdtemp(tmpl.data());
    tree_ = std::make_unique<FakeSysfsTree>(dir_ / "sys");
    socket_ = (dir_ / "vfiod.sock").string();
    json config = {{"socket", {{"path", (dir_ / "unused.sock").string()}, {"group", nullptr}}},
                   {"logging", {{"level", "debug"}, {"target", "stderr"}}},
                   {"kernel", "model"},
                   {"sysfs_root", (dir_ / "sys").string()},
                   {"model",
                    {{"devices", json::array({{{"bdf", kEdu},
                                               {"vendor", "1234"},
                                               {"device", "11e8"},
                                               {"group", 3},
                                               {"bound", true}}})}}}};
    WriteFile(dir_ / "vfiod.json", config.dump(2));
    auto s = FdStoreSupervisor::Create(dir_.string());
    ASSERT_TRUE(s) << s.error().message();
    supervisor_.emplace(std::move(*s));
    // The socket unit's part: a listening socket, passed under its own name.
    UniqueFd listener(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, socket_.c_str(), sizeof addr.sun_path - 1);
    ASSERT_EQ(::bind(listener.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    ASSERT_EQ(::listen(listener.get(), 16), 0);
    supervisor_->Add("vfiod.socket", std::move(listener));
  }
  void TearDown() override {
    Kill(SIGTERM);
    supervisor_.reset();
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  /// Starts vfiod with the store and waits for READY=1.
  void Start() {
    ready_seen_ = supervisor_->messages().size();
    std::string log = (dir_ / "vfiod.log").string();
    UniqueFd log_fd(::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644));
    FdStoreSupervisor::SpawnOptions options;
    auto pid = supervisor_->Spawn(
        {VFIOD_BINARY, "--config", (dir_ / "vfiod.json").string(), "--foreground"}, options,
        log_fd.get());
    ASSERT_TRUE(pid) << pid.error().message();
    pid_ = *pid;
    for (int i = 0; i < 500 && !Ready(); ++i) {  // start-up, not a timing assertion
      ASSERT_TRUE(supervisor_->Pump(20));
    }
    ASSERT_TRUE(Ready()) << ReadAll(log);
  }
  bool Ready() const {
    const auto& m = supervisor_->messages();
    return std::any_of(m.begin() + static_cast<long>(ready_seen_), m.end(),
                       [](const std::string& s) { return s.starts_with("READY=1"); });
  }
  void Kill(int signo) {
    if (pid_ > 0) {
      ::kill(pid_, signo);
      int status = 0;
      ::waitpid(pid_, &status, 0);
      pid_ = -1;
      (void)supervisor_->Pump(0);
    }
  }
  client::Client Connect() {
    auto c = client::Client::Connect(socket_);
    EXPECT_TRUE(c) << (c ? "" : c.error().message());
    return std::move(*c);
  }
  /// Pumps until a message equal to `text` arrived (or ~5 s passed).
  bool WaitFor(const std::string& text) {
    for (int i = 0; i < 250; ++i) {
      const auto& m = supervisor_->messages();
      if (std::find(m.begin(), m.end(), text) != m.end()) {
        return true;
      }
      (void)supervisor_->Pump(20);
    }
    return false;
  }

  fs::path dir_;
  std::string socket_;
  std::unique_ptr<FakeSysfsTree> tree_;
  std::optional<FdStoreSupervisor> supervisor_;
  pid_t pid_ = -1;
  size_t ready_seen_ = 0;
};

TEST_F(DaemonFdStoreTest, ContainerFdsLiveInTheStoreUntilDestroyed) {
  Start();
  client::Client c = Connect();
  auto created = c.Call("container.create", {{"devices", {kEdu}}});
  ASSERT_CALL_OK(created);
  const std::string name = "c-" + std::to_string(created->result["container"].get<uint64_t>());
  ASSERT_TRUE(WaitFor("FDSTORE=1\nFDNAME=" + name));
  ASSERT_EQ(supervisor_->Named(name).size(), 1u);           // a real fd arrived with it
  ASSERT_TRUE(WaitFor("FDSTORE=1\nFDNAME=vfiod-state-1"));  // the record naming it
  ASSERT_CALL_OK(c.Call("container.destroy", {{"container", created->result["container"]}}));
  ASSERT_TRUE(WaitFor("FDSTOREREMOVE=1\nFDNAME=" + name));
  EXPECT_TRUE(supervisor_->Named(name).empty());
  ASSERT_TRUE(WaitFor("FDSTORE=1\nFDNAME=vfiod-state-0"));  // the record after the destroy
  for (int i = 0; i < 50 && supervisor_->store().size() != 2; ++i) {
    (void)supervisor_->Pump(20);
  }
  // The listening socket and the newest record alone: no container, group
  // or mapping fd, and the older record is gone.
  ASSERT_EQ(supervisor_->store().size(), 2u);
  EXPECT_EQ(supervisor_->Named("vfiod-state-0").size(), 1u);
}

TEST_F(DaemonFdStoreTest, GroupFdsAndTheStateRecordFollowTheContainer) {
  Start();
  client::Client c = Connect();
  auto created = c.Call("container.create", {{"devices", {kEdu}}, {"name", "ring"}});
  ASSERT_CALL_OK(created);
  const std::string id = std::to_string(created->result["container"].get<uint64_t>());
  ASSERT_TRUE(WaitFor("FDSTORE=1\nFDNAME=vfiod-state-1"));
  size_t groups = 0;
  for (const auto& entry : supervisor_->store()) {
    groups += entry.name.starts_with("g-" + id + "-") ? 1 : 0;
  }
  EXPECT_EQ(groups, 1u);  // edu is alone in its group
}

TEST_F(DaemonFdStoreTest, AKilledDaemonsContainerFdSurvivesAndTheNextOneDropsIt) {
  Start();
  std::string name;
  {
    client::Client c = Connect();
    auto created = c.Call("container.create", {{"devices", {kEdu}}, {"name", "ring"}});
    ASSERT_CALL_OK(created);
    name = "c-" + std::to_string(created->result["container"].get<uint64_t>());
    ASSERT_TRUE(WaitFor("FDSTORE=1\nFDNAME=" + name));
    ASSERT_TRUE(WaitFor("FDSTORE=1\nFDNAME=vfiod-state-1"));  // the record naming it
  }
  // A stored object no record describes (a crash before the record): removed.
  supervisor_->Add("m-999", UniqueFd(::memfd_create("stray", MFD_CLOEXEC)));
  Kill(SIGKILL);
  ASSERT_EQ(supervisor_->Named(name).size(), 1u);  // the store outlived the process
  Start();                                         // gets the socket and the old container fd back
  ASSERT_TRUE(WaitFor("FDSTOREREMOVE=1\nFDNAME=" + name));
  EXPECT_TRUE(supervisor_->Named(name).empty());
  client::Client c = Connect();  // and serves the socket it was passed
  ASSERT_CALL_OK(c.Call("ping"));
  EXPECT_NE(ReadAll((dir_ / "vfiod.log").string()).find("dropping " + name), std::string::npos);
  ASSERT_TRUE(WaitFor("FDSTOREREMOVE=1\nFDNAME=m-999"));
  EXPECT_TRUE(supervisor_->Named("m-999").empty());
}

}  // namespace
}  // namespace vfiod::itest
