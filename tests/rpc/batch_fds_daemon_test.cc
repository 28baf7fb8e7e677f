// The real vfiod (model kernel) over its socket: a batch whose replies would
// carry more fds than one message can never leaves a call run but unanswered.
#include <gtest/gtest.h>

#include <set>

#include "daemon_harness.h"
#include "proto/fd_passing.h"

namespace vfiod::itest {
namespace {

TEST(BatchReplyFds, AllocsPastTheLimitAreRefusedBeforeTheyRun) {
  Daemon daemon;
  client::Client c = daemon.Connect();
  auto container = c.Call("container.create", {{"devices", {kEdu}}});
  ASSERT_CALL_OK(container);
  const uint64_t id = container->result["container"];
  constexpr std::size_t kCalls = wire::kMaxFdsPerMessage + 4;
  std::vector<client::BatchCall> calls(
      kCalls, {"dma.alloc", {{"container", id}, {"size", 4096}, {"backing", "4k"}}});
  auto replies = c.Batch(calls);
  ASSERT_TRUE(replies) << replies.error().Describe();
  ASSERT_EQ(replies->size(), kCalls);
  std::set<uint64_t> mappings;
  for (std::size_t i = 0; i < kCalls; ++i) {
    const client::CallResult& r = (*replies)[i];
    if (i < wire::kMaxFdsPerMessage) {
      ASSERT_CALL_OK(r);
      EXPECT_EQ(r->fds.size(), 1u);
      mappings.insert(r->result["mapping"].get<uint64_t>());
    } else {
      EXPECT_EQ(CodeOf(r), wire::kFdError);
      EXPECT_EQ(DetailOf(r), "a batch reply carries at most 16 fds: split the batch");
    }
  }
  EXPECT_EQ(mappings.size(), wire::kMaxFdsPerMessage);
  // Exactly the answered calls made mappings: none exists that the client cannot name.
  auto list = c.Call("dma.list", {{"container", id}});
  ASSERT_CALL_OK(list);
  ASSERT_EQ(list->result.size(), wire::kMaxFdsPerMessage);
  for (const auto& m : list->result) {
    EXPECT_TRUE(mappings.contains(m["mapping"].get<uint64_t>())) << m;
  }
  EXPECT_EQ(daemon.Stop(), 0);
}

TEST(BatchReplyFds, DeviceOpensArePartOfTheSameBudget) {
  Daemon daemon;
  client::Client c = daemon.Connect();
  auto container = c.Call("container.create", {{"devices", {kEdu}}});
  ASSERT_CALL_OK(container);
  const uint64_t id = container->result["container"];
  std::vector<client::BatchCall> calls(
      wire::kMaxFdsPerMessage - 1,
      {"dma.alloc", {{"container", id}, {"size", 4096}, {"backing", "4k"}}});
  calls.push_back({"device.open", {{"container", id}, {"bdf", kEdu}}});
  calls.push_back({"device.open", {{"container", id}, {"bdf", kEdu}}});
  auto replies = c.Batch(calls);
  ASSERT_TRUE(replies) << replies.error().Describe();
  ASSERT_EQ(replies->size(), calls.size());
  const client::CallResult& fits = (*replies)[wire::kMaxFdsPerMessage - 1];
  ASSERT_CALL_OK(fits);
  EXPECT_EQ(fits->fds.size(), 1u);
  EXPECT_EQ(CodeOf(replies->back()), wire::kFdError);
  EXPECT_EQ(daemon.Stop(), 0);
}

}  // namespace
}  // namespace vfiod::itest
