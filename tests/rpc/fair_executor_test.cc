// FairExecutor on real threads: one user's blocked work leaves a thread for
// the others, tasks posted by tasks run before Join returns, and nothing runs
// after it. No timing: gates and futures only (the waits are hang guards).
#include "rpc/fair_executor.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <future>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "gate.h"

namespace vfiod::rpc {
namespace {

constexpr Tenant kA = 1000;
constexpr Tenant kB = 1001;
constexpr auto kHangGuard = std::chrono::seconds(60);

using testing::Gate;

TEST(FairExecutor, DefaultCapKeepsOneThreadOutOfAnyOneUsersReach) {
  EXPECT_EQ(FairExecutor::DefaultCap(4), 3u);
  EXPECT_EQ(FairExecutor::DefaultCap(2), 1u);
  EXPECT_EQ(FairExecutor::DefaultCap(1), 1u);
  EXPECT_EQ(FairExecutor::DefaultCap(0), 1u);
  FairExecutor executor(4, 0, "test");
  EXPECT_EQ(executor.cap(), 3u);
}

TEST(FairExecutor, AnotherUsersTaskRunsWhileOneUserBlocksEveryThreadItMay) {
  Gate gate;
  std::atomic<int> a_done{0};
  FairExecutor executor(4, 0, "test");
  for (int i = 0; i < 10; ++i) {
    executor.Post(kA, [&] {
      gate.Wait();
      ++a_done;
    });
  }
  ASSERT_TRUE(gate.AwaitWaiting(3));  // A's cap: three of the four threads
  std::promise<void> b_ran;
  executor.Post(kB, [&] { b_ran.set_value(); });
  // On a plain FIFO pool B's task would sit behind A's seven queued ones.
  ASSERT_EQ(b_ran.get_future().wait_for(kHangGuard), std::future_status::ready);
  EXPECT_EQ(gate.waiting(), 3);  // B's thread never took one of A's
  EXPECT_EQ(a_done.load(), 0);
  gate.Open();
  executor.Join();
  EXPECT_EQ(a_done.load(), 10);
}

TEST(FairExecutor, OneThreadAlternatesBetweenUsers) {
  Gate gate;
  std::mutex mu;
  std::vector<std::string> order;
  auto record = [&](std::string label) {
    return [&, label = std::move(label)] {
      std::lock_guard lock(mu);
      order.push_back(label);
    };
  };
  FairExecutor executor(1, 0, "test");
  executor.Post(kA, [&] {
    gate.Wait();
    record("a1")();
  });
  ASSERT_TRUE(gate.AwaitWaiting(1));  // a1 holds the only thread
  executor.Post(kA, record("a2"));
  executor.Post(kA, record("a3"));
  executor.Post(kB, record("b1"));
  gate.Open();
  executor.Join();
  EXPECT_EQ(order, (std::vector<std::string>{"a1", "a2", "b1", "a3"}));
}

TEST(FairExecutor, JoinRunsTasksPostedByTasksAndLaterPostsAreDropped) {
  std::atomic<int> ran{0};
  auto executor = std::make_unique<FairExecutor>(2, 1, "test");
  FairExecutor* self = executor.get();
  for (int i = 0; i < 5; ++i) {
    executor->Post(kA, [&, self] {
      ++ran;
      self->Post(kB, [&] { ++ran; });
    });
  }
  executor->Join();
  EXPECT_EQ(ran.load(), 10);
  auto alive = std::make_shared<int>(0);
  std::weak_ptr<int> watch = alive;
  executor->Post(kA, [&, keep = std::move(alive)] { ++ran; });
  EXPECT_TRUE(watch.expired());  // destroyed, not kept, and never run
  EXPECT_EQ(ran.load(), 10);
  executor->Join();  // idempotent
}

}  // namespace
}  // namespace vfiod::rpc
