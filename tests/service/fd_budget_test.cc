// The fd store's budget (limits.max_stored_fds, service/fd_budget.h): every
// object that keeps fds in the service manager's store is charged the most it
// keeps there before it is made, a request past the budget is refused with
// kQuota (EDQUOT) and makes nothing, charges come back once the fds have left
// the store, and what the store holds never passes the budget, also with
// many clients at once.
#include "service/fd_budget.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

#include "model_service.h"
#include "service/service.h"

namespace vfiod::service {
namespace {

using model_service::EduConfig;
using model_service::kEdu;

constexpr uid_t kUser = 1000;
constexpr uid_t kOther = 1001;

TEST(FdBudget, ChargesUpToTheCapAndGivesBackByTicketOrName) {
  FdBudget budget(5);
  auto a = budget.Charge(3);
  ASSERT_TRUE(a.has_value());
  EXPECT_FALSE(budget.Charge(3).has_value());  // 6 > 5: nothing charged
  EXPECT_EQ(budget.charged(), 3u);
  {
    auto b = budget.Charge(2);
    ASSERT_TRUE(b.has_value());
    EXPECT_EQ(budget.charged(), 5u);
  }  // never assigned: given back
  EXPECT_EQ(budget.charged(), 3u);
  a->Assign("c-1");
  a->Assign("c-2");  // once: the second does nothing
  EXPECT_EQ(budget.charged(), 3u);
  budget.Release("c-2");
  EXPECT_EQ(budget.charged(), 3u);
  budget.Release("c-1");
  EXPECT_EQ(budget.charged(), 0u);
  budget.Release("c-1");  // given back already
  EXPECT_EQ(budget.charged(), 0u);
  EXPECT_FALSE(budget.Charge(UINT64_MAX).has_value());  // no overflow
  auto none = budget.Charge(0);
  ASSERT_TRUE(none.has_value());
  EXPECT_EQ(budget.charged(), 0u);
}

TEST(FdBudget, AdoptedChargesPassALowerCapAndBlockNewOnesUntilGone) {
  FdBudget budget(10);
  budget.Adopt("m-1", 2);
  budget.SetMax(1);
  EXPECT_EQ(budget.charged(), 2u);
  EXPECT_FALSE(budget.Charge(1).has_value());
  budget.Release("m-1");
  EXPECT_TRUE(budget.Charge(1).has_value());
}

/// The service manager's store as the hooks see it: fds counted by name
/// (FDSTORE=1 adds one, FDSTOREREMOVE=1 drops every fd of the name), the
/// most it ever held, and whether a store ever found it past `max`.
struct CountingStore {
  std::mutex mu;
  std::map<std::string, uint64_t> fds;
  uint64_t total = 0;
  uint64_t peak = 0;
  uint64_t max = UINT64_MAX;
  Service::FdStoreHooks Hooks(uint64_t capacity = 0) {
    Service::FdStoreHooks hooks;
    hooks.store = [this](const std::string& name, int) {
      std::lock_guard lock(mu);
      ++fds[name];
      peak = std::max(peak, ++total);
    };
    hooks.remove = [this](const std::string& name) {
      std::lock_guard lock(mu);
      if (auto it = fds.find(name); it != fds.end()) {
        total -= it->second;
        fds.erase(it);
      }
    };
    hooks.capacity = capacity;
    return hooks;
  }
  uint64_t Total() {
    std::lock_guard lock(mu);
    return total;
  }
};

class FdBudgetServiceTest : public model_service::ModelServiceTest {
 protected:
  /// Edu for kUser and kOther; the fd budget `max`.
  void StartWith(uint32_t max, uint64_t capacity = 0) {
    Config config =
        EduConfig(kUser, Quota{.locked_bytes = 1 << 30, .mappings = 1000, .containers = 4});
    config.policy.rules[0].uids = {kUser, kOther};
    DevicePattern ivshmem;
    ivshmem.kind = DevicePattern::Kind::kBdf;
    ivshmem.bdf = model_service::kIvshmem;
    config.policy.rules[0].devices.push_back(ivshmem);
    config.limits.max_stored_fds = max;
    Start(config);
    service_->SetFdStoreHooks(store_.Hooks(capacity));
  }
  ~FdBudgetServiceTest() override { service_.reset(); }  // before store_, which its hooks use
  SResult<MapResult> Alloc(const Caller& who, ContainerId c) {
    AllocRequest r;
    r.container = c;
    r.size = 4096;
    return service_->Alloc(who, r, {});
  }
  static void ExpectOverBudget(const ServiceError& e) {
    EXPECT_EQ(e.kind, ErrorKind::kQuota);
    EXPECT_EQ(e.error.code, EDQUOT);
    EXPECT_NE(e.error.message().find("limits.max_stored_fds"), std::string::npos)
        << e.error.message();
  }
  uint64_t Charged() { return service_->Status().stored_fds_charged; }

  CountingStore store_;
};

// edu's group 3 has one member: a container is charged its fd, its own
// record, its group's fd and edu's device fd; a mapping 2; a memfd region 1.
TEST_F(FdBudgetServiceTest, EachObjectIsChargedTheMostItKeepsAndRefusedPastTheBudget) {
  StartWith(9);
  EXPECT_EQ(service_->Status().max_stored_fds, 9u);
  Caller user = Open(kUser);
  auto c = service_->CreateContainer(user, {kEdu}, "");
  ASSERT_TRUE(c.has_value()) << c.error().error.message();
  EXPECT_EQ(Charged(), 4u);
  auto opened = service_->OpenDevice(user, c->id, kEdu);  // its device fd: charged already
  ASSERT_TRUE(opened.has_value()) << opened.error().error.message();
  auto m1 = Alloc(user, c->id);
  ASSERT_TRUE(m1.has_value()) << m1.error().error.message();
  auto m2 = Alloc(user, c->id);
  ASSERT_TRUE(m2.has_value()) << m2.error().error.message();
  EXPECT_EQ(Charged(), 8u);
  EXPECT_LE(store_.Total(), Charged());
  const uint64_t stored = store_.Total();

  auto refused = Alloc(user, c->id);  // 8 + 2 > 9
  ASSERT_FALSE(refused.has_value());
  ExpectOverBudget(refused.error());
  EXPECT_EQ(service_->ContainerInfo(user, c->id)->first.mappings, 2u);  // nothing mapped
  EXPECT_EQ(service_->Status().mappings, 2u);

  UniqueFd memfd(static_cast<int>(::syscall(SYS_memfd_create, "budget", MFD_CLOEXEC)));
  ASSERT_EQ(::ftruncate(memfd.get(), 1 << 20), 0);
  auto region = service_->RegisterRegion(user, RegisterRequest{std::move(memfd), 0, 0});
  ASSERT_TRUE(region.has_value()) << region.error().error.message();  // 9: exactly full
  EXPECT_EQ(Charged(), 9u);
  Caller other = Open(kOther);
  auto second = service_->CreateContainer(other, {model_service::kIvshmem}, "");
  ASSERT_FALSE(second.has_value());  // another user: the budget is the machine's
  ExpectOverBudget(second.error());
  EXPECT_EQ(store_.Total(), stored + 1);  // the region's file; nothing of the refusals

  ASSERT_TRUE(service_->FreeMapping(user, m1->mapping.id).has_value());
  EXPECT_EQ(Charged(), 7u);
  auto again = Alloc(user, c->id);  // the freed mapping's charge came back
  ASSERT_TRUE(again.has_value()) << again.error().error.message();
  EXPECT_LE(store_.peak, 9u);
  ASSERT_TRUE(service_->DestroyContainer(user, c->id).has_value());
  service_->CloseSession(user.session);
  EXPECT_EQ(Charged(), 1u);  // the region's file stays until a state record lets it go
  service_->RecordStored(service_->SnapshotState());
  EXPECT_EQ(Charged(), 0u);
  EXPECT_EQ(store_.Total(), 0u);
}

TEST_F(FdBudgetServiceTest, TheServiceManagersOwnLimitLowersTheBudget) {
  StartWith(100, /*capacity=*/6);  // less the two state records: 4, one container
  EXPECT_EQ(service_->Status().max_stored_fds, 4u);
  Caller user = Open(kUser);
  auto c = service_->CreateContainer(user, {kEdu}, "");
  ASSERT_TRUE(c.has_value()) << c.error().error.message();
  auto refused = Alloc(user, c->id);
  ASSERT_FALSE(refused.has_value());
  ExpectOverBudget(refused.error());
}

TEST_F(FdBudgetServiceTest, WithoutAnFdStoreNothingIsChargedOrRefused) {
  Config config =
      EduConfig(kUser, Quota{.locked_bytes = 1 << 30, .mappings = 100, .containers = 4});
  config.limits.max_stored_fds = 1;
  Start(config);  // no hooks: started by hand
  Caller user = Open(kUser);
  auto c = service_->CreateContainer(user, {kEdu}, "");
  ASSERT_TRUE(c.has_value()) << c.error().error.message();
  ASSERT_TRUE(Alloc(user, c->id).has_value());
  EXPECT_EQ(service_->Status().stored_fds_charged, 0u);
  EXPECT_EQ(service_->Status().max_stored_fds, 0u);
}

// Two users' threads map and free at once against a budget that holds only
// some of what they ask: the store never holds more than the budget.
TEST_F(FdBudgetServiceTest, ConcurrentClientsNeverPassTheBudget) {
  StartWith(4 + 7 * 2 + 1);  // the container and 7 mappings, one fd spare
  Caller a = Open(kUser);
  Caller b = Open(kOther);
  auto ca = service_->CreateContainer(a, {kEdu}, "");
  ASSERT_TRUE(ca.has_value()) << ca.error().error.message();
  // kOther shares edu's group only through kUser's container.
  ASSERT_TRUE(service_->ShareContainer(a, ca->id, ShareList{{kOther}, {}}, true).has_value());
  std::atomic<uint64_t> made{0};
  std::atomic<uint64_t> refused{0};
  std::atomic<uint64_t> other_errors{0};
  auto work = [&](const Caller& who) {
    for (int i = 0; i < 200; ++i) {
      auto m = Alloc(who, ca->id);
      if (!m) {
        (m.error().error.code == EDQUOT ? refused : other_errors)++;
        continue;
      }
      ++made;
      if (i % 3 != 0) {
        (void)service_->FreeMapping(who, m->mapping.id);
      }
    }
  };
  std::thread ta(work, a);
  std::thread tb(work, b);
  ta.join();
  tb.join();
  EXPECT_EQ(other_errors.load(), 0u);
  EXPECT_GT(made.load(), 0u);
  EXPECT_GT(refused.load(), 0u);  // the budget was reached
  EXPECT_LE(store_.peak, 4u + 7 * 2 + 1);
  EXPECT_LE(store_.Total(), Charged());
}

}  // namespace
}  // namespace vfiod::service
