// The per-user log budget (journal/user_budget.h): a token bucket per uid,
// root exempt, what is cut counted and reported; and journal::Emit applying
// it to the events a client causes, and only to those.
#include "journal/user_budget.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <sstream>

#include "journal/sink.h"
#include "support/recording_sink.h"

namespace vfiod::journal {
namespace {

using ::testing::HasSubstr;
using Clock = UserBudget::Clock;
using std::chrono::milliseconds;

int Logged(UserBudget& budget, uid_t uid, int lines, Clock::time_point at) {
  int logged = 0;
  for (int i = 0; i < lines; ++i) {
    logged += budget.Admit(uid, at).log ? 1 : 0;
  }
  return logged;
}

TEST(UserBudget, ABurstThenTheRateAndTheCutIsCounted) {
  UserBudget budget;
  budget.Configure(/*per_second=*/10, /*burst=*/5);
  const Clock::time_point t0 = Clock::now();
  EXPECT_EQ(Logged(budget, 1000, 8, t0), 5);               // the burst, then 3 cut
  const Clock::time_point later = t0 + milliseconds(250);  // 2.5 tokens came back
  const UserBudget::Verdict first = budget.Admit(1000, later);
  EXPECT_TRUE(first.log);
  EXPECT_EQ(first.suppressed, 3u);  // the first line that passes carries the count
  EXPECT_TRUE(budget.Admit(1000, later).log);
  EXPECT_FALSE(budget.Admit(1000, later).log);
  const UserBudget::Verdict next = budget.Admit(1000, t0 + milliseconds(2000));
  EXPECT_TRUE(next.log);
  EXPECT_EQ(next.suppressed, 1u);  // counted again from 0
  EXPECT_EQ(budget.Admit(1000, t0 + milliseconds(2000)).suppressed, 0u);
}

TEST(UserBudget, EachUserHasItsOwnBucketAndRootNone) {
  UserBudget budget;
  budget.Configure(1, 2);
  const Clock::time_point t0 = Clock::now();
  EXPECT_EQ(Logged(budget, 1000, 10, t0), 2);
  EXPECT_EQ(Logged(budget, 1001, 10, t0), 2);  // 1000's flood took nothing of 1001's
  EXPECT_EQ(Logged(budget, 0, 1000, t0), 1000);
}

TEST(UserBudget, ARateOfZeroIsNoLimit) {
  UserBudget budget;
  budget.Configure(0, 1);
  EXPECT_EQ(Logged(budget, 1000, 1000, Clock::now()), 1000);
}

TEST(UserBudget, TakeSuppressedListsEveryCutUserOnce) {
  UserBudget budget;
  budget.Configure(1, 1);
  const Clock::time_point t0 = Clock::now();
  (void)Logged(budget, 1000, 4, t0);
  (void)Logged(budget, 1001, 1, t0);  // nothing cut
  (void)Logged(budget, 1002, 2, t0);
  using Counts = std::vector<std::pair<uid_t, uint64_t>>;
  EXPECT_EQ(budget.TakeSuppressed(), (Counts{{1000, 3}, {1002, 1}}));
  EXPECT_EQ(budget.TakeSuppressed(), Counts{});
}

// The process's budget, as main configures it, for one test.
class ProcessBudget : public ::testing::Test {
 protected:
  ProcessBudget() { ProcessUserBudget().Configure(/*per_second=*/1, /*burst=*/3); }
  ~ProcessBudget() override { ProcessUserBudget().Configure(0, 1); }
  ProcessBudget(const ProcessBudget&) = delete;
  ProcessBudget& operator=(const ProcessBudget&) = delete;
  ProcessBudget(ProcessBudget&&) = delete;
  ProcessBudget& operator=(ProcessBudget&&) = delete;

  RecordingSink sink_;
  ScopedSink scoped_{sink_};
};

Event Refused(uid_t uid) {
  return {.kind = Kind::kPolicyRefused, .message = "refused", .uid = uid};
}

TEST_F(ProcessBudget, EmitCutsAUsersFloodAndSaysHowMuchWhenItStops) {
  for (int i = 0; i < 100; ++i) {
    Emit(Refused(1000));
  }
  EXPECT_EQ(sink_.Of(Kind::kPolicyRefused).size(), 3u);
  Emit(Refused(1001));  // another user is heard
  EXPECT_EQ(sink_.Of(Kind::kPolicyRefused).size(), 4u);
  // The daemon's own events and the kernel's requests are never cut.
  Emit({.kind = Kind::kReleaseRequested, .message = "release", .uid = 1000});
  EXPECT_EQ(sink_.Of(Kind::kReleaseRequested).size(), 1u);
  EXPECT_TRUE(sink_.Of(Kind::kEventsSuppressed).empty());
  Emit({.kind = Kind::kDaemonStopped, .message = "stopped"});
  const std::vector<Event> cut = sink_.Of(Kind::kEventsSuppressed);
  ASSERT_EQ(cut.size(), 1u);
  EXPECT_EQ(cut[0].uid, std::optional<uid_t>(1000));
  EXPECT_THAT(cut[0].message, HasSubstr("uid 1000: 97 log lines not written"));
  EXPECT_EQ(sink_.events().back().kind, Kind::kDaemonStopped);  // the count comes first
}

TEST_F(ProcessBudget, MayLogForReportsTheCutBeforeTheNextLineThatPasses) {
  const Clock::time_point t0 = Clock::now();
  int passed = 0;
  for (int i = 0; i < 6; ++i) {
    passed += MayLogFor(1000, Level::kWarning, t0) ? 1 : 0;
  }
  EXPECT_EQ(passed, 3);
  EXPECT_TRUE(sink_.Of(Kind::kEventsSuppressed).empty());
  EXPECT_TRUE(MayLogFor(1000, Level::kWarning, t0 + milliseconds(1000)));  // one token came back
  const std::vector<Event> cut = sink_.Of(Kind::kEventsSuppressed);
  ASSERT_EQ(cut.size(), 1u);
  EXPECT_THAT(cut[0].message, HasSubstr("uid 1000: 3 log lines not written (over 1 a second"));
}

TEST_F(ProcessBudget, ALevelNotLoggedTakesNothingFromTheBudget) {
  const Clock::time_point t0 = Clock::now();
  for (int i = 0; i < 10; ++i) {
    EXPECT_FALSE(MayLogFor(1000, Level::kDebug, t0));  // spdlog's default level is info
  }
  EXPECT_TRUE(MayLogFor(1000, Level::kInfo, t0));
  EXPECT_TRUE(MayLogFor(1000, Level::kInfo, t0));
  EXPECT_TRUE(MayLogFor(1000, Level::kInfo, t0));
  EXPECT_FALSE(MayLogFor(1000, Level::kInfo, t0));
}

TEST_F(ProcessBudget, LogForWritesAUsersLinesAtTheirLevelWithinItsBudget) {
  std::ostringstream out;
  const auto previous = spdlog::default_logger();
  auto logger = std::make_shared<spdlog::logger>(
      "test", std::make_shared<spdlog::sinks::ostream_sink_st>(out));
  logger->set_pattern("%l %v");
  logger->set_level(spdlog::level::info);
  spdlog::set_default_logger(logger);
  for (int i = 0; i < 5; ++i) {
    LogFor(1000, Level::kWarning, "line {} of uid {}", i, 1000);
  }
  LogFor(0, Level::kInfo, "root's line");
  spdlog::set_default_logger(previous);
  EXPECT_EQ(out.str(),
            "warning line 0 of uid 1000\nwarning line 1 of uid 1000\n"
            "warning line 2 of uid 1000\ninfo root's line\n");
}

}  // namespace
}  // namespace vfiod::journal
