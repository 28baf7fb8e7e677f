// ListenFds in real restarted processes: lifecycle_child stores fds through
// the notify socket, FdStoreSupervisor keeps them and starts a new
// lifecycle_child with LISTEN_* set, which reports what it got back.
#include "lifecycle/listen_fds.h"

#include <gtest/gtest.h>
#include <sys/wait.h>

#include <sstream>
#include <string>
#include <vector>

#include "fd_store_supervisor.h"

namespace vfiod::lifecycle {
namespace {

using testing::ChildRun;
using testing::FdStoreSupervisor;
using Options = FdStoreSupervisor::SpawnOptions;

Options WithEnv(std::map<std::string, std::string> env, std::vector<std::string> unset = {}) {
  Options o;
  o.env = std::move(env);
  o.unset = std::move(unset);
  return o;
}

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    out.push_back(line);
  }
  return out;
}

class ListenFdsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto s = FdStoreSupervisor::Create(::testing::TempDir());
    ASSERT_TRUE(s) << s.error().message();
    supervisor_.emplace(std::move(*s));
  }
  /// Runs lifecycle_child with `args`; expects exit status 0.
  std::vector<std::string> Run(std::vector<std::string> args, const Options& options = {}) {
    args.insert(args.begin(), LIFECYCLE_CHILD);
    auto run = testing::RunChild(*supervisor_, args, options);
    EXPECT_TRUE(run) << (run ? "" : run.error().message());
    if (!run) {
      return {};
    }
    EXPECT_TRUE(WIFEXITED(run->status) && WEXITSTATUS(run->status) == 0) << run->output;
    return Lines(run->output);
  }
  /// "stored NAME DEV INO x" lines of a store run, as "fd NAME DEV INO".
  static std::vector<std::string> AsListed(const std::vector<std::string>& stored) {
    std::vector<std::string> out;
    for (const auto& line : stored) {
      out.push_back("fd" + line.substr(6, line.rfind(' ') - 6) + " 1");  // CLOEXEC set
    }
    return out;
  }
  std::optional<FdStoreSupervisor> supervisor_;
};

TEST_F(ListenFdsTest, StoredFilesComeBackAfterARestartWithTheirNames) {
  auto stored = Run({"store", "c-1", "m-4", "vfiod-state-0"});
  ASSERT_EQ(stored.size(), 3u);
  ASSERT_EQ(supervisor_->store().size(), 3u);
  auto listed = Run({"list", "6"});
  ASSERT_EQ(listed.size(), 6u);
  EXPECT_EQ(listed[0], "ok 3");
  auto expected = AsListed(stored);  // same name, same st_dev/st_ino, FD_CLOEXEC
  EXPECT_EQ(std::vector<std::string>(listed.begin() + 1, listed.begin() + 4), expected);
  EXPECT_EQ(listed[4], "open");  // nothing else of 3..8 open
  EXPECT_EQ(listed[5], "env");   // LISTEN_* unset
  // And again: the store still holds them for the next restart.
  auto again = Run({"list", "6"});
  EXPECT_EQ(std::vector<std::string>(again.begin() + 1, again.begin() + 4), expected);
}

TEST_F(ListenFdsTest, RemovedNamesDoNotComeBack) {
  auto stored = Run({"store", "c-1", "c-2"});
  ASSERT_EQ(stored.size(), 2u);
  Run({"remove", "c-1"});
  auto listed = Run({"list"});
  ASSERT_GE(listed.size(), 2u);
  EXPECT_EQ(listed[0], "ok 1");
  EXPECT_EQ(listed[1], AsListed(stored)[1]);
}

TEST_F(ListenFdsTest, NoNamesMeansUnknown) {
  Run({"store", "c-1"});
  auto listed = Run({"list"}, WithEnv({}, {"LISTEN_FDNAMES"}));
  ASSERT_GE(listed.size(), 2u);
  EXPECT_EQ(listed[0], "ok 1");
  EXPECT_TRUE(listed[1].starts_with("fd unknown ")) << listed[1];
}

TEST_F(ListenFdsTest, NothingPassedIsAnEmptyList) {
  auto listed = Run({"list"}, [] {
    Options o;
    o.pass_store = false;
    return o;
  }());
  EXPECT_EQ(listed, (std::vector<std::string>{"ok 0", "open", "env"}));
}

TEST_F(ListenFdsTest, AnotherProcesssVariablesAreLeftAlone) {
  Run({"store", "c-1"});
  // LISTEN_PID of some other process (inherited): not ours, fd 3 untouched.
  auto listed = Run({"list", "2"}, WithEnv({{"LISTEN_PID", "1"}}));
  EXPECT_EQ(listed, (std::vector<std::string>{"ok 0", "open 3", "env"}));
}

struct Malformed {
  const char* what;
  std::map<std::string, std::string> env;
  std::vector<std::string> unset;
  const char* error;  // the errno the child reports
  const char* open;   // fds of 3..4 left open afterwards
};

TEST_F(ListenFdsTest, MalformedVariablesAreErrorsAndPassedFdsAreClosed) {
  Run({"store", "c-1", "c-2"});
  const Malformed cases[] = {
      {"pid not a number", {{"LISTEN_PID", "12x"}}, {}, "error 22", "open 3 4"},
      {"pid zero", {{"LISTEN_PID", "0"}}, {}, "error 22", "open 3 4"},
      {"count not a number", {{"LISTEN_FDS", "two"}}, {}, "error 22", "open 3 4"},
      {"count negative", {{"LISTEN_FDS", "-1"}}, {}, "error 22", "open 3 4"},
      {"count missing", {}, {"LISTEN_FDS"}, "error 22", "open 3 4"},
      {"count huge", {{"LISTEN_FDS", "99999999999"}}, {}, "error 22", "open 3 4"},
      {"too few names", {{"LISTEN_FDNAMES", "c-1"}}, {}, "error 22", "open"},
      {"too many names", {{"LISTEN_FDNAMES", "a:b:c"}}, {}, "error 22", "open"},
      {"empty name", {{"LISTEN_FDNAMES", "c-1:"}}, {}, "error 22", "open"},
      {"bad name", {{"LISTEN_FDNAMES", "c-1:c\x01"}}, {}, "error 22", "open"},
      {"an fd not open", {{"LISTEN_FDS", "3"}}, {}, "error 9", "open"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.what);
    auto listed = Run({"list", "2"}, WithEnv(c.env, c.unset));
    ASSERT_EQ(listed.size(), 3u);
    EXPECT_TRUE(listed[0].starts_with(std::string(c.error) + " ")) << listed[0];
    EXPECT_EQ(listed[1], c.open);
    EXPECT_EQ(listed[2], "env");  // unset even on error
  }
}

}  // namespace
}  // namespace vfiod::lifecycle
