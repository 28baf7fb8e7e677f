// vfiod under FdStoreSupervisor, as under systemd with a socket unit and
// FileDescriptorStoreMax=: it serves the socket it is passed (LISTEN_FDS),
// each container's fd reaches the store as c-<id> (its groups' as
// g-<id>-<group>) and leaves it on destroy, a state record (vfiod-state-N)
// follows every change, a SIGKILLed vfiod's container fds stay in the store,
// and the next vfiod removes what the record does not describe and releases
// what it cannot take over (here all of it: the model kernel lives in the
// dead process, so its fds mean nothing to the next one; the VM test takes
// them over on the real kernel, vm_restart_test.cc).
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>

#include <chrono>
#include <thread>

#include "daemon_harness.h"
#include "supervised_vfiod.h"

namespace vfiod::itest {
namespace {

class DaemonFdStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (InVm()) {
      GTEST_SKIP() << "host test (model kernel)";
    }
    std::string tmpl = (fs::temp_directory_path() / "vfiod-fdstore-XXXXXX").string();
    dir_ = ::mkdtemp(tmpl.data());
    tree_ = std::make_unique<FakeSysfsTree>(dir_ / "sys");
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
    auto daemon = SupervisedVfiod::Create(dir_, config);
    ASSERT_TRUE(daemon) << daemon.error().message();
    daemon_ = std::move(*daemon);
  }
  void TearDown() override {
    daemon_.reset();
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  void Start() { ASSERT_EQ(daemon_->Start(), ""); }
  void Kill(int signo) { daemon_->Kill(signo); }
  client::Client Connect() {
    auto c = daemon_->Connect();
    EXPECT_TRUE(c) << (c ? "" : c.error().message());
    return std::move(*c);
  }
  bool WaitFor(const std::string& text) { return daemon_->WaitFor(text); }
  SupervisedVfiod::Held supervisor() { return daemon_->Supervisor(); }

  fs::path dir_;
  std::unique_ptr<FakeSysfsTree> tree_;
  std::unique_ptr<SupervisedVfiod> daemon_;
};

TEST_F(DaemonFdStoreTest, ContainerFdsLiveInTheStoreUntilDestroyed) {
  Start();
  client::Client c = Connect();
  auto created = c.Call("container.create", {{"devices", {kEdu}}});
  ASSERT_CALL_OK(created);
  const std::string name = "c-" + std::to_string(created->result["container"].get<uint64_t>());
  ASSERT_TRUE(WaitFor("FDSTORE=1\nFDNAME=" + name));
  ASSERT_EQ(supervisor()->Named(name).size(), 1u);          // a real fd arrived with it
  ASSERT_TRUE(WaitFor("FDSTORE=1\nFDNAME=vfiod-state-1"));  // the record naming it
  ASSERT_CALL_OK(c.Call("container.destroy", {{"container", created->result["container"]}}));
  ASSERT_TRUE(WaitFor("FDSTOREREMOVE=1\nFDNAME=" + name));
  EXPECT_TRUE(supervisor()->Named(name).empty());
  ASSERT_TRUE(WaitFor("FDSTORE=1\nFDNAME=vfiod-state-0"));  // the record after the destroy
  for (int i = 0; i < 50 && supervisor()->store().size() != 2; ++i) {
    (void)supervisor()->Pump(20);
  }
  // The listening socket and the newest record alone: no container, group
  // or mapping fd, and the older record is gone.
  ASSERT_EQ(supervisor()->store().size(), 2u);
  EXPECT_EQ(supervisor()->Named("vfiod-state-0").size(), 1u);
}

TEST_F(DaemonFdStoreTest, GroupFdsAndTheStateRecordFollowTheContainer) {
  Start();
  client::Client c = Connect();
  auto created = c.Call("container.create", {{"devices", {kEdu}}, {"name", "ring"}});
  ASSERT_CALL_OK(created);
  const std::string id = std::to_string(created->result["container"].get<uint64_t>());
  ASSERT_TRUE(WaitFor("FDSTORE=1\nFDNAME=vfiod-state-1"));
  size_t groups = 0;
  auto held = supervisor();
  for (const auto& entry : held->store()) {
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
  supervisor()->Add("m-999", UniqueFd(::memfd_create("stray", MFD_CLOEXEC)));
  Kill(SIGKILL);
  ASSERT_EQ(supervisor()->Named(name).size(), 1u);  // the store outlived the process
  Start();                                          // gets the socket and the old container fd back
  ASSERT_TRUE(WaitFor("FDSTOREREMOVE=1\nFDNAME=" + name));
  EXPECT_TRUE(supervisor()->Named(name).empty());
  client::Client c = Connect();  // and serves the socket it was passed
  ASSERT_CALL_OK(c.Call("ping"));
  const std::string log = ReadAll((dir_ / "vfiod.log").string());
  EXPECT_NE(
      log.find("restart: container " + name.substr(2) + " (uid 0) and its 0 mappings released"),
      std::string::npos)
      << log;
  ASSERT_TRUE(WaitFor("FDSTOREREMOVE=1\nFDNAME=m-999"));
  EXPECT_TRUE(supervisor()->Named("m-999").empty());
}

TEST_F(DaemonFdStoreTest, StatusSaysTheStoreIsInUseAndSigtermHandsOver) {
  Start();
  client::Client c = Connect();
  auto status = c.Call("status");
  ASSERT_CALL_OK(status);
  EXPECT_EQ(status->result["restart"]["fd_store"], true);
  EXPECT_EQ(status->result["restart"]["detached_sessions"], 0);
  auto info = c.Call("session.info");
  ASSERT_CALL_OK(info);
  EXPECT_EQ(info->result["resumable"], true);
  EXPECT_EQ(info->result["token"].get<std::string>().size(), 32u);
  EXPECT_EQ(CodeOf(c.Call("session.resume", {{"token", std::string(32, 'x')}})),
            wire::kInvalidParams);
  EXPECT_EQ(CodeOf(c.Call("session.resume", {{"token", std::string(32, 'a')}})), wire::kNotFound);
  auto created = c.Call("container.create", {{"devices", {kEdu}}, {"name", "ring"}});
  ASSERT_CALL_OK(created);
  const std::string name = "c-" + std::to_string(created->result["container"].get<uint64_t>());
  ASSERT_TRUE(WaitFor("FDSTORE=1\nFDNAME=vfiod-state-1"));
  const int status_code = daemon_->Kill(SIGTERM);
  EXPECT_TRUE(WIFEXITED(status_code) && WEXITSTATUS(status_code) == 0) << status_code;
  const std::string log = daemon_->log();
  EXPECT_NE(log.find("handed over 1 containers"), std::string::npos) << log;
  size_t records = 0;
  auto held = supervisor();
  for (const auto& entry : held->store()) {
    records += entry.name.starts_with("vfiod-state-") ? 1 : 0;
  }
  EXPECT_EQ(held->Named(name).size(), 1u) << "the store keeps the container";
  EXPECT_EQ(records, 1u) << "and the one record naming it";
}

// systemd 254 and later pass FileDescriptorStoreMax= as $FDSTORE: the budget
// (limits.max_stored_fds, 65000 by default) shrinks to it less the two state
// records, a request past it is refused, and the store never holds more.
TEST_F(DaemonFdStoreTest, TheStoresOwnLimitBoundsWhatVfiodKeepsThere) {
  daemon_->SetEnv("FDSTORE", "9");  // 7 for objects: a container (4) and one mapping (2)
  Start();
  client::Client c = Connect();
  auto created = c.Call("container.create", {{"devices", {kEdu}}});
  ASSERT_CALL_OK(created);
  const json container = created->result["container"];
  ASSERT_CALL_OK(
      c.Call("dma.alloc", {{"container", container}, {"size", 4096}, {"backing", "4k"}}));
  auto refused = c.Call("dma.alloc", {{"container", container}, {"size", 4096}, {"backing", "4k"}});
  ASSERT_FALSE(refused.has_value());
  EXPECT_EQ(refused.error().code, wire::kQuotaExceeded);
  EXPECT_NE(refused.error().Describe().find("limits.max_stored_fds"), std::string::npos)
      << refused.error().Describe();
  auto status = c.Call("status");
  ASSERT_CALL_OK(status);
  EXPECT_EQ(status->result["mappings"], 1);  // the refused one made nothing
  EXPECT_EQ(status->result["restart"]["max_stored_fds"], 7);
  EXPECT_EQ(status->result["restart"]["stored_fds_charged"], 6);
  ASSERT_TRUE(WaitFor("FDSTORE=1\nFDNAME=vfiod-state-1"));
  {
    auto held = supervisor();
    size_t objects = 0;
    for (const auto& entry : held->store()) {
      objects += entry.name == "vfiod.socket" || entry.name.starts_with("vfiod-state-") ? 0 : 1;
    }
    // The container's fd and group fd and the mapping's memfd; their own
    // records left with the state record that describes them.
    EXPECT_GE(objects, 3u);
    EXPECT_LE(objects, 7u);
  }
  ASSERT_CALL_OK(c.Call("container.destroy", {{"container", container}}));
  status = c.Call("status");
  ASSERT_CALL_OK(status);
  EXPECT_EQ(status->result["restart"]["stored_fds_charged"], 0);
  EXPECT_NE(daemon_->log().find("the service manager keeps 9"), std::string::npos)
      << daemon_->log();
}

TEST_F(DaemonFdStoreTest, DaemonRestartHandsOverAndExitsForTheUnitToRestartIt) {
  Start();
  client::Client c = Connect();
  auto created = c.Call("container.create", {{"devices", {kEdu}}, {"name", "ring"}});
  ASSERT_CALL_OK(created);
  auto restarting = c.Call("daemon.restart");
  ASSERT_CALL_OK(restarting);
  EXPECT_EQ(restarting->result["restarting"], true);
  const int status = daemon_->Wait();
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 75) << status;
  EXPECT_NE(daemon_->log().find("handed over 1 containers"), std::string::npos) << daemon_->log();
  Start();  // what the unit does for exit status 75
  client::Client again = Connect();
  ASSERT_CALL_OK(again.Call("ping"));
}

}  // namespace
}  // namespace vfiod::itest
