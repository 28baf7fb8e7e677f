// The stage clock: stable, distinct names; what no stage accounts for goes
// to "other"; a scope on a null clock is nothing; stats sum the stages per
// method and per uid. No durations are asserted (only sums and structure).
#include "service/stages.h"

#include <gtest/gtest.h>

#include <chrono>
#include <set>
#include <string>

#include "service/stats.h"

namespace vfiod::service {
namespace {

using std::chrono::nanoseconds;

TEST(StagesTest, NamesAreStableAndDistinct) {
  std::set<std::string> names;
  for (std::size_t i = 0; i < kStageCount; ++i) {
    names.insert(std::string(StageName(static_cast<Stage>(i))));
  }
  EXPECT_EQ(names, (std::set<std::string>{"parse", "queue", "params", "lookup", "lock_wait",
                                          "prepare", "plan", "ioctl", "bookkeeping", "record",
                                          "result", "other", "reply"}));
  EXPECT_FALSE(InHandler(Stage::kParse));
  EXPECT_FALSE(InHandler(Stage::kQueue));
  EXPECT_FALSE(InHandler(Stage::kReply));
  EXPECT_TRUE(InHandler(Stage::kParams));
  EXPECT_TRUE(InHandler(Stage::kLookup));
  EXPECT_TRUE(InHandler(Stage::kResult));
  EXPECT_TRUE(InHandler(Stage::kOther));
}

TEST(StagesTest, CloseGivesOtherWhatNoStageAccountedFor) {
  StageClock clock;
  clock.Add(Stage::kParse, nanoseconds(7));  // outside the handler: not part of its time
  clock.Add(Stage::kLookup, nanoseconds(100));
  clock.Add(Stage::kIoctl, nanoseconds(300));
  clock.Add(Stage::kOther, nanoseconds(5));
  clock.Add(Stage::kPlan, nanoseconds(-9));  // nothing
  clock.Close(nanoseconds(1000));
  const StageTimes& t = clock.times();
  EXPECT_EQ(t[static_cast<std::size_t>(Stage::kOther)], 5U + 595U);
  EXPECT_EQ(t[static_cast<std::size_t>(Stage::kPlan)], 0U);
  uint64_t handler = 0;
  for (std::size_t i = 0; i < kStageCount; ++i) {
    handler += InHandler(static_cast<Stage>(i)) ? t[i] : 0;
  }
  EXPECT_EQ(handler, 1000U);
  EXPECT_EQ(t[static_cast<std::size_t>(Stage::kParse)], 7U);
}

TEST(StagesTest, StagesOverrunningTheHandlerLeaveOtherAlone) {
  StageClock clock;
  clock.Add(Stage::kIoctl, nanoseconds(2000));
  clock.Close(nanoseconds(1000));  // rounding of separate clock reads
  EXPECT_EQ(clock.times()[static_cast<std::size_t>(Stage::kOther)], 0U);
}

TEST(StagesTest, ScopesAddToTheirStageAndANullClockIsNothing) {
  StageClock clock;
  {
    StageScope a(&clock, Stage::kRecord);
    StageScope none(nullptr, Stage::kPlan);
    a.End();
    a.End();  // idempotent
  }
  for (std::size_t i = 0; i < kStageCount; ++i) {
    if (static_cast<Stage>(i) != Stage::kRecord) {
      EXPECT_EQ(clock.times()[i], 0U) << StageName(static_cast<Stage>(i));
    }
  }
}

TEST(StagesTest, StatsSumStagesPerMethodAndPerUid) {
  Stats stats;
  StageTimes one{};
  one[static_cast<std::size_t>(Stage::kIoctl)] = 1500;
  one[static_cast<std::size_t>(Stage::kOther)] = 500;
  stats.RecordRequest(1000, "dma.map_bar", 2, "", &one);
  stats.RecordRequest(1000, "dma.map_bar", 2, "", &one);
  stats.RecordRequest(0, "dma.map_bar", 2, "", nullptr);  // untimed: counted, no stages
  stats.RecordReply(1000, "dma.map_bar", 40);
  const StatsSnapshot all = stats.Snapshot();
  const MethodStats& m = all.by_method.at("dma.map_bar");
  EXPECT_EQ(m.calls, 3U);
  EXPECT_EQ(m.stage_ns[static_cast<std::size_t>(Stage::kIoctl)], 3000U);
  EXPECT_EQ(m.stage_ns[static_cast<std::size_t>(Stage::kOther)], 1000U);
  EXPECT_EQ(m.stage_ns[static_cast<std::size_t>(Stage::kReply)], 40U);
  const StatsSnapshot root = stats.Snapshot(0);
  EXPECT_EQ(root.by_method.at("dma.map_bar").stage_ns, StageTimes{});
  EXPECT_EQ(stats.Snapshot(1000)
                .by_method.at("dma.map_bar")
                .stage_ns[static_cast<std::size_t>(Stage::kReply)],
            40U);
}

}  // namespace
}  // namespace vfiod::service
