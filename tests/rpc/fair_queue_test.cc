// FairQueue, step by step: order within a tenant, turns across tenants, caps.
#include "rpc/fair_queue.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace vfiod::rpc {
namespace {

constexpr Tenant kA = 1000;
constexpr Tenant kB = 1001;
constexpr Tenant kC = 0;

/// Pushes tasks that append their label to `ran`, and runs what Pop hands out.
class FairQueueTest : public ::testing::Test {
 protected:
  void Push(Tenant tenant, std::string label) {
    queue_.Push(tenant, [this, label = std::move(label)] { ran_.push_back(label); });
  }
  /// Pops and runs one task; "" when Pop had nothing, else the task's label.
  std::string PopAndRun() {
    auto picked = queue_.Pop();
    if (!picked) {
      return "";
    }
    picked->task();
    last_tenant_ = picked->tenant;
    return ran_.back();
  }
  /// Pops and runs until Pop has nothing, finishing each task at once.
  std::vector<std::string> Drain() {
    std::vector<std::string> order;
    for (std::string label = PopAndRun(); !label.empty(); label = PopAndRun()) {
      order.push_back(label);
      queue_.Done(last_tenant_);
    }
    return order;
  }

  FairQueue queue_{100};
  std::vector<std::string> ran_;
  Tenant last_tenant_ = 0;
};

TEST_F(FairQueueTest, OneTenantsTasksRunInOrder) {
  for (const char* label : {"a1", "a2", "a3"}) {
    Push(kA, label);
  }
  EXPECT_EQ(queue_.queued(), 3u);
  EXPECT_EQ(Drain(), (std::vector<std::string>{"a1", "a2", "a3"}));
  EXPECT_EQ(queue_.queued(), 0u);
}

TEST_F(FairQueueTest, TenantsTakeTurnsWhateverTheirQueueLengths) {
  for (const char* label : {"a1", "a2", "a3", "a4"}) {
    Push(kA, label);
  }
  Push(kB, "b1");
  Push(kB, "b2");
  Push(kC, "c1");
  EXPECT_EQ(Drain(), (std::vector<std::string>{"a1", "b1", "c1", "a2", "b2", "a3", "a4"}));
}

TEST_F(FairQueueTest, ALateTenantWaitsForOneTurnOfEachTenantAhead) {
  for (int i = 1; i <= 10; ++i) {
    Push(kA, "a" + std::to_string(i));
  }
  ASSERT_EQ(PopAndRun(), "a1");
  queue_.Done(kA);
  Push(kB, "b1");
  EXPECT_EQ(PopAndRun(), "a2");  // A was ahead in the rotation
  queue_.Done(kA);
  EXPECT_EQ(PopAndRun(), "b1");  // not behind a3..a10
}

TEST(FairQueue, ATenantAtItsCapWaitsForOneOfItsTasksToEnd) {
  FairQueue queue(2);
  for (int i = 0; i < 3; ++i) {
    queue.Push(kA, [] {});
  }
  ASSERT_TRUE(queue.Pop());
  ASSERT_TRUE(queue.Pop());
  EXPECT_EQ(queue.running(kA), 2u);
  EXPECT_FALSE(queue.Pop());  // the third must wait
  EXPECT_EQ(queue.queued(), 1u);
  queue.Done(kA);
  auto third = queue.Pop();
  ASSERT_TRUE(third);
  EXPECT_EQ(third->tenant, kA);
  EXPECT_EQ(queue.running(kA), 2u);
}

TEST(FairQueue, ACappedTenantDoesNotHoldBackOthers) {
  FairQueue queue(1);
  queue.Push(kA, [] {});
  queue.Push(kA, [] {});
  queue.Push(kB, [] {});
  auto first = queue.Pop();
  ASSERT_TRUE(first);
  EXPECT_EQ(first->tenant, kA);
  auto second = queue.Pop();
  ASSERT_TRUE(second);
  EXPECT_EQ(second->tenant, kB);  // A's second task waits for its cap, B goes ahead
  EXPECT_FALSE(queue.Pop());
  queue.Done(kA);
  auto third = queue.Pop();
  ASSERT_TRUE(third);
  EXPECT_EQ(third->tenant, kA);
}

TEST(FairQueue, ZeroCapCountsAsOneAndStrayDoneIsHarmless) {
  FairQueue queue(0);
  EXPECT_EQ(queue.cap(), 1u);
  queue.Done(kA);  // nothing running: ignored
  queue.Push(kA, [] {});
  queue.Push(kA, [] {});
  ASSERT_TRUE(queue.Pop());
  EXPECT_FALSE(queue.Pop());
  queue.Done(kA);
  queue.Done(kA);  // one too many: ignored, the count stays at zero
  EXPECT_EQ(queue.running(kA), 0u);
  ASSERT_TRUE(queue.Pop());
  EXPECT_EQ(queue.running(kA), 1u);
}

}  // namespace
}  // namespace vfiod::rpc
