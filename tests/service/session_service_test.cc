// The service core on the model kernel (through a fault-injecting wrapper):
// what a session owns is released when it closes, owners are isolated,
// quotas are checked before any ioctl, a failed map gives its reservation
// back, and a session that dies during a map leaves nothing mapped.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <thread>

#include "kernel/fault_kernel.h"
#include "kernel/model_kernel.h"
#include "model_service.h"
#include "service/service.h"

namespace vfiod::service {
namespace {

using model_service::EduConfig;
using model_service::kEdu;
using model_service::kIvshmem;
using ::testing::HasSubstr;

constexpr uid_t kUser = 1000;

class SessionServiceTest : public model_service::ModelServiceTest {
 protected:
  SessionServiceTest() {
    Start(EduConfig(kUser, Quota{.locked_bytes = 4 << 20, .mappings = 2, .containers = 1}));
    baseline_fds_ = model_.OpenFdCount();
  }
  AllocRequest Alloc4K(ContainerId c, uint64_t size) {
    AllocRequest r;
    r.container = c;
    r.size = size;
    return r;
  }

  size_t baseline_fds_ = 0;
};

TEST_F(SessionServiceTest, ClosingASessionReleasesEverythingItOwns) {
  Caller a = Open(0);
  auto c = service_->CreateContainer(a, {kEdu, kIvshmem}, "");
  ASSERT_TRUE(c.has_value()) << c.error().error.message();
  auto m = service_->Alloc(a, Alloc4K(c->id, 1 << 20), {});
  ASSERT_TRUE(m.has_value()) << m.error().error.message();
  auto bar = service_->MapBar(a, MapBarRequest{c->id, kIvshmem, 0, {}, ""});
  ASSERT_TRUE(bar.has_value()) << bar.error().error.message();
  auto dev = service_->OpenDevice(a, c->id, kEdu);
  ASSERT_TRUE(dev.has_value()) << dev.error().error.message();
  EXPECT_EQ(model_.LockedBytes(), 1u << 20);
  EXPECT_EQ(service_->Status().mappings, 2u);
  EXPECT_GT(model_.OpenFdCount(), baseline_fds_);

  // The client closes the device fd it was handed (an open one would keep
  // the group held: lingering) and its session ends.
  { auto closed = std::move(*dev); }
  service_->CloseSession(a.session);
  StatusView s = service_->Status();
  EXPECT_EQ(s.clients, 0u);
  EXPECT_EQ(s.containers, 0u);
  EXPECT_EQ(s.mappings, 0u);
  EXPECT_EQ(s.locked_bytes, 0u);
  EXPECT_EQ(model_.LockedBytes(), 0u);
  EXPECT_EQ(model_.OpenFdCount(), baseline_fds_);  // device, groups, container all closed
  // The groups are free for a new container.
  Caller b = Open(0);
  EXPECT_TRUE(service_->CreateContainer(b, {kEdu}, "").has_value());
}

TEST_F(SessionServiceTest, OwnersAreIsolated) {
  Caller a = Open(kUser);
  Caller b = Open(kUser + 1);
  auto c = service_->CreateContainer(a, {kEdu}, "");
  ASSERT_TRUE(c.has_value());
  auto m = service_->Alloc(a, Alloc4K(c->id, 4096), {});
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(service_->ContainerInfo(b, c->id).error().kind, ErrorKind::kNotFound);
  EXPECT_EQ(service_->FreeMapping(b, m->mapping.id).error().kind, ErrorKind::kNotFound);
  EXPECT_EQ(service_->DestroyContainer(b, c->id).error().kind, ErrorKind::kNotFound);
  EXPECT_EQ(service_->Alloc(b, Alloc4K(c->id, 4096), {}).error().kind, ErrorKind::kNotFound);
  EXPECT_TRUE(service_->ListContainers(b).empty());
  EXPECT_TRUE(service_->ListMappings(b, std::nullopt)->empty());
  // b's uid has no rule at all: the policy refuses it any device.
  EXPECT_EQ(service_->CreateContainer(b, {kEdu}, "").error().kind, ErrorKind::kPermission);
  // Root sees everything.
  Caller root = Open(0);
  EXPECT_EQ(service_->ListContainers(root).size(), 1u);
}

TEST_F(SessionServiceTest, QuotaIsCheckedBeforeAnyIoctl) {
  Caller a = Open(kUser);
  auto c = service_->CreateContainer(a, {kEdu}, "");
  ASSERT_TRUE(c.has_value());
  uint64_t maps = faulty_->IoctlCalls("VFIO_IOMMU_MAP_DMA");
  auto big = service_->Alloc(a, Alloc4K(c->id, 8 << 20), {});
  ASSERT_FALSE(big.has_value());
  EXPECT_EQ(big.error().kind, ErrorKind::kQuota);
  EXPECT_EQ(faulty_->IoctlCalls("VFIO_IOMMU_MAP_DMA"), maps);
  EXPECT_EQ(service_->CreateContainer(a, {kIvshmem}, "").error().kind, ErrorKind::kPermission);
  ASSERT_TRUE(service_->Alloc(a, Alloc4K(c->id, 2 << 20), {}).has_value());
  ASSERT_TRUE(service_->Alloc(a, Alloc4K(c->id, 2 << 20), {}).has_value());
  EXPECT_EQ(service_->Alloc(a, Alloc4K(c->id, 4096), {}).error().kind, ErrorKind::kQuota);
}

TEST_F(SessionServiceTest, FailedMapGivesItsReservationBack) {
  Caller a = Open(kUser);
  auto c = service_->CreateContainer(a, {kEdu}, "");
  ASSERT_TRUE(c.has_value());
  // The second of two chunks fails: the engine rolls back, the quota is whole.
  faulty_->Arm(kernel::Fault::Ioctl("VFIO_IOMMU_MAP_DMA", 2, ENOMEM));
  auto failed = service_->Alloc(a, Alloc4K(c->id, 4 << 20), {});
  ASSERT_FALSE(failed.has_value());
  EXPECT_EQ(failed.error().kind, ErrorKind::kKernel);
  EXPECT_EQ(failed.error().error.code, ENOMEM);
  EXPECT_EQ(model_.LockedBytes(), 0u);
  EXPECT_EQ(service_->Status().mappings, 0u);
  faulty_->Clear();
  EXPECT_TRUE(service_->Alloc(a, Alloc4K(c->id, 4 << 20), {}).has_value());
}

TEST_F(SessionServiceTest, NamedContainerOutlivesItsSessionUntilShutdown) {
  Caller a = Open(kUser);
  auto c = service_->CreateContainer(a, {kEdu}, "ring");
  ASSERT_TRUE(c.has_value());
  AllocRequest named = Alloc4K(c->id, 4096);
  named.name = "keep";
  ASSERT_TRUE(service_->Alloc(a, named, {}).has_value());
  ASSERT_TRUE(service_->Alloc(a, Alloc4K(c->id, 8192), {}).has_value());
  service_->CloseSession(a.session);
  StatusView s = service_->Status();
  EXPECT_EQ(s.containers, 1u);
  EXPECT_EQ(s.mappings, 1u);  // the unnamed one went with the session
  EXPECT_EQ(model_.LockedBytes(), 4096u);
  // The same user comes back and finds it; another user's "ring" is its own
  // name, and kUser's ring stays invisible to it until shared.
  Caller again = Open(kUser);
  EXPECT_EQ(service_->ListContainers(again).size(), 1u);
  EXPECT_TRUE(service_->AttachContainer(again, "ring").has_value());
  Caller other = Open(kUser + 1);
  EXPECT_EQ(service_->AttachContainer(other, "ring").error().kind, ErrorKind::kNotFound);
  EXPECT_EQ(service_->AttachContainer(other, "ring", kUser).error().kind, ErrorKind::kNotFound);
  ASSERT_TRUE(service_->ShareContainer(again, c->id, ShareList{{kUser + 1}, {}}, true));
  // Shared now, but the policy grants kUser + 1 no device of it.
  EXPECT_EQ(service_->AttachContainer(other, "ring", kUser).error().kind, ErrorKind::kPermission);
  service_->Shutdown();
  EXPECT_EQ(model_.LockedBytes(), 0u);
  EXPECT_EQ(model_.OpenFdCount(), baseline_fds_);
}

// A share list is bounded in all, not only per request: 64 users (or
// groups) a call cannot become 65 over two calls. Names already shared count
// once; a refused call adds nothing; unsharing makes room again.
TEST_F(SessionServiceTest, AShareListHoldsAtMostItsLimitInAll) {
  Caller a = Open(kUser);
  auto c = service_->CreateContainer(a, {kEdu}, "");
  ASSERT_TRUE(c.has_value());
  ShareList full;
  for (uid_t u = 0; u < ShareList::kMaxEntries; ++u) {
    full.users.insert(5000 + u);
    full.groups.insert(6000 + u);
  }
  ASSERT_TRUE(service_->ShareContainer(a, c->id, full, true));
  ASSERT_TRUE(service_->ShareContainer(a, c->id, ShareList{{5000}, {6000}}, true));  // again
  auto more = service_->ShareContainer(a, c->id, ShareList{{5000, 7000}, {}}, true);
  ASSERT_FALSE(more.has_value());
  EXPECT_EQ(more.error().kind, ErrorKind::kQuota);
  EXPECT_EQ(more.error().error.code, EDQUOT);
  EXPECT_THAT(more.error().error.detail, HasSubstr("65 users (limit 64 users)"));
  auto groups = service_->ShareContainer(a, c->id, ShareList{{}, {7000}}, true);
  ASSERT_FALSE(groups.has_value());
  EXPECT_THAT(groups.error().error.detail, HasSubstr("65 groups"));
  auto info = service_->ContainerInfo(a, c->id);
  ASSERT_TRUE(info.has_value());
  EXPECT_EQ(info->first.shared.users, full.users);  // nothing of the refused calls
  EXPECT_EQ(info->first.shared.groups, full.groups);
  ASSERT_TRUE(service_->ShareContainer(a, c->id, ShareList{{5000}, {}}, false));
  EXPECT_TRUE(service_->ShareContainer(a, c->id, ShareList{{7000}, {}}, true));
}

TEST_F(SessionServiceTest, SessionClosedDuringAMapLeavesNothingMapped) {
  Caller a = Open(0);
  // A named container survives the session, so only the map's own check can
  // release a mapping that completes after its session closed.
  auto c = service_->CreateContainer(a, {kEdu}, "survivor");
  ASSERT_TRUE(c.has_value());
  std::thread closer;
  ProgressFn progress = [&](uint64_t, uint64_t) {
    if (closer.joinable()) {
      return true;
    }
    closer = std::thread([&] { service_->CloseSession(a.session); });
    while (service_->Status().clients != 0) {  // the session is gone at once
      std::this_thread::yield();
    }
    return true;
  };
  auto m = service_->Alloc(a, Alloc4K(c->id, 8 << 20), progress);
  closer.join();
  ASSERT_FALSE(m.has_value());
  EXPECT_EQ(m.error().error.code, ECANCELED);  // abandoned at the next chunk
  EXPECT_EQ(model_.LockedBytes(), 0u);
  StatusView s = service_->Status();
  EXPECT_EQ(s.mappings, 0u);
  EXPECT_EQ(s.containers, 1u);
  EXPECT_EQ(s.locked_bytes, 0u);
}

}  // namespace
}  // namespace vfiod::service
