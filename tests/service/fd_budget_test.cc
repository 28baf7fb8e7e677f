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

constexpr uid_t kRoot = 0;

TEST(FdBudget, ChargesUpToTheCapAndGivesBackByTicketOrName) {
  FdBudget budget(5, 100);
  auto a = budget.Charge(kRoot, 3);
  ASSERT_TRUE(a.has_value());
  EXPECT_EQ(budget.Charge(kRoot, 3).error(), FdBudget::Refusal::kAll);  // 6 > 5: nothing charged
  EXPECT_EQ(budget.charged(), 3u);
  {
    auto b = budget.Charge(kRoot, 2);
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
  EXPECT_FALSE(budget.Charge(kRoot, UINT64_MAX).has_value());  // no overflow
  EXPECT_FALSE(budget.Charge(kUser, UINT64_MAX).has_value());
  auto none = budget.Charge(kUser, 0);
  ASSERT_TRUE(none.has_value());
  EXPECT_EQ(budget.charged(), 0u);
}

TEST(FdBudget, AdoptedChargesPassALowerCapAndBlockNewOnesUntilGone) {
  FdBudget budget(10, 100);
  budget.Adopt("m-1", kUser, 2);
  budget.SetMax(1);
  EXPECT_EQ(budget.charged(), 2u);
  EXPECT_EQ(budget.charged(kUser), 2u);
  EXPECT_FALSE(budget.Charge(kRoot, 1).has_value());
  budget.Release("m-1");
  EXPECT_EQ(budget.charged(kUser), 0u);
  EXPECT_TRUE(budget.Charge(kRoot, 1).has_value());
}

// A user's share counts every object of its uid, named or still ticketed;
// another user's charges do not count against it, and root has no share.
TEST(FdBudget, ANonRootUserIsChargedAtMostItsShare) {
  FdBudget budget(1000, 10);
  auto a = budget.Charge(kUser, 6);
  ASSERT_TRUE(a.has_value());
  a->Assign("c-1");
  auto b = budget.Charge(kUser, 4);  // ticketed, not yet named: counts
  ASSERT_TRUE(b.has_value());
  EXPECT_EQ(budget.Charge(kUser, 1).error(), FdBudget::Refusal::kUser);
  EXPECT_EQ(budget.charged(kUser), 10u);
  EXPECT_TRUE(budget.Charge(kOther, 10).has_value());  // given back at once
  EXPECT_TRUE(budget.Charge(kRoot, 500).has_value());
  budget.Release("c-1");
  EXPECT_EQ(budget.charged(kUser), 4u);
  EXPECT_TRUE(budget.Charge(kUser, 6).has_value());
}

// The non-root users together stop max / 16 short of the cap; only root's
// objects may use that last part.
TEST(FdBudget, TheLastSixteenthIsRoots) {
  FdBudget budget(32, 100);
  EXPECT_EQ(budget.root_reserve(), 2u);
  auto a = budget.Charge(kUser, 20);
  auto b = budget.Charge(kOther, 10);
  ASSERT_TRUE(a.has_value() && b.has_value());
  EXPECT_EQ(budget.Charge(kOther, 1).error(), FdBudget::Refusal::kAll);
  auto root = budget.Charge(kRoot, 2);
  ASSERT_TRUE(root.has_value());
  EXPECT_EQ(budget.Charge(kRoot, 1).error(), FdBudget::Refusal::kAll);
  EXPECT_EQ(budget.charged(), 32u);
  EXPECT_EQ(budget.charged(kRoot), 2u);
  // Root's charges are within the cap, but not within the users' part.
  FdBudget rooted(32, 100);
  auto all = rooted.Charge(kRoot, 31);
  ASSERT_TRUE(all.has_value());
  EXPECT_EQ(rooted.Charge(kUser, 2).error(), FdBudget::Refusal::kAll);
  EXPECT_TRUE(rooted.Charge(kUser, 1).has_value());
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
  /// Edu for kUser and kOther; the fd budget `max`, a user's share `per_user`.
  void StartWith(uint32_t max, uint64_t capacity = 0, uint32_t per_user = 4096) {
    Config config =
        EduConfig(kUser, Quota{.locked_bytes = 1 << 30, .mappings = 1000, .containers = 4});
    config.policy.rules[0].uids = {kUser, kOther};
    DevicePattern ivshmem;
    ivshmem.kind = DevicePattern::Kind::kBdf;
    ivshmem.bdf = model_service::kIvshmem;
    config.policy.rules[0].devices.push_back(ivshmem);
    config.limits.max_stored_fds = max;
    config.limits.max_stored_fds_per_user = per_user;
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
  static void ExpectOverBudget(const ServiceError& e,
                               const std::string& limit = "limits.max_stored_fds") {
    EXPECT_EQ(e.kind, ErrorKind::kQuota);
    EXPECT_EQ(e.error.code, EDQUOT);
    EXPECT_NE(e.error.message().find(limit + ":"), std::string::npos) << e.error.message();
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

// One user at its share is refused; another user is not, and each sees its
// own charge in status (root sees everyone's).
TEST_F(FdBudgetServiceTest, OneUsersShareLeavesTheStoreToTheOthers) {
  StartWith(64, 0, /*per_user=*/6);
  Caller user = Open(kUser);
  auto c = service_->CreateContainer(user, {kEdu}, "");  // 4
  ASSERT_TRUE(c.has_value()) << c.error().error.message();
  ASSERT_TRUE(Alloc(user, c->id).has_value());  // 6: the whole share
  auto refused = Alloc(user, c->id);
  ASSERT_FALSE(refused.has_value());
  ExpectOverBudget(refused.error(), "limits.max_stored_fds_per_user");
  EXPECT_EQ(service_->Status().mappings, 1u);  // nothing mapped

  Caller other = Open(kOther);
  auto theirs = service_->CreateContainer(other, {model_service::kIvshmem}, "");
  ASSERT_TRUE(theirs.has_value()) << theirs.error().error.message();
  EXPECT_EQ(service_->StatusFor(user).stored_fds_charged, 6u);
  EXPECT_EQ(service_->StatusFor(other).stored_fds_charged, 4u);
  EXPECT_EQ(service_->StatusFor(other).max_stored_fds_per_user, 6u);
  EXPECT_EQ(service_->StatusFor(Open(0)).stored_fds_charged, 10u);
  EXPECT_EQ(Charged(), 10u);
  ASSERT_TRUE(service_->DestroyContainer(user, c->id).has_value());
  EXPECT_EQ(service_->StatusFor(user).stored_fds_charged, 0u);
  auto again = service_->CreateContainer(user, {kEdu}, "");  // the share came back
  EXPECT_TRUE(again.has_value()) << again.error().error.message();
}

// The users together fill all but root's sixteenth; root still makes a
// mapping there. A non-root caller's refusal does not tell it the others'
// figures.
TEST_F(FdBudgetServiceTest, RootCanStillMakeObjectsWhenTheUsersFilledTheirPart) {
  StartWith(16);  // 1 for root only
  Caller user = Open(kUser);
  auto c = service_->CreateContainer(user, {kEdu}, "");  // 4
  ASSERT_TRUE(c.has_value()) << c.error().error.message();
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(Alloc(user, c->id).has_value()) << i;  // 14
  }
  auto refused = Alloc(user, c->id);  // 16 > 15
  ASSERT_FALSE(refused.has_value());
  ExpectOverBudget(refused.error());
  EXPECT_EQ(refused.error().error.message().find("charged for all clients"), std::string::npos)
      << refused.error().error.message();
  auto root = Alloc(Open(0), c->id);  // 16: the cap, root's reserve used
  ASSERT_TRUE(root.has_value()) << root.error().error.message();
  EXPECT_EQ(Charged(), 16u);
  auto full = Alloc(Open(0), c->id);
  ASSERT_FALSE(full.has_value());
  ExpectOverBudget(full.error());
  EXPECT_NE(full.error().error.message().find("charged for all clients"), std::string::npos);
  EXPECT_LE(store_.peak, 16u);
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
