// Service::SnapshotState on the model kernel: the record names every live
// container and mapping with what the service itself reports for them, and
// each uid's charges; it survives its own encoding, and follows frees and
// session ends.
#include <gtest/gtest.h>

#include "lifecycle/state_record.h"
#include "model_service.h"
#include "service/service.h"

namespace vfiod::service {
namespace {

using model_service::EduConfig;
using model_service::kEdu;
using model_service::kIvshmem;

constexpr uid_t kUser = 1000;

class SnapshotStateTest : public model_service::ModelServiceTest {
 protected:
  SnapshotStateTest() {
    Start(EduConfig(kUser, Quota{.locked_bytes = 8 << 20, .mappings = 4, .containers = 2}));
  }
};

TEST_F(SnapshotStateTest, RecordsContainersMappingsAndChargesAsTheServiceReportsThem) {
  Caller user = Open(kUser);
  Caller root = Open(0);
  ShareList share;
  share.users = {1002, 1001};
  share.groups = {77};
  auto ring = service_->CreateContainer(user, {kEdu}, "ring", share);
  ASSERT_TRUE(ring) << ring.error().error.message();
  AllocRequest alloc;
  alloc.container = ring->id;
  alloc.size = 1 << 20;
  alloc.name = "kbuf";
  auto kbuf = service_->Alloc(user, alloc, {});
  ASSERT_TRUE(kbuf) << kbuf.error().error.message();
  auto scratch = service_->CreateContainer(root, {kIvshmem}, "", {});
  ASSERT_TRUE(scratch) << scratch.error().error.message();
  auto bar = service_->MapBar(root, MapBarRequest{scratch->id, kIvshmem, 0, {}, ""});
  ASSERT_TRUE(bar) << bar.error().error.message();

  const lifecycle::StateRecord record = service_->SnapshotState();
  ASSERT_EQ(record.containers.size(), 2u);
  const auto& c = record.containers[0];
  EXPECT_EQ(c.id, ring->id);
  EXPECT_EQ(c.name, "ring");
  EXPECT_EQ(c.owner_uid, kUser);
  EXPECT_EQ(c.shared_users, (std::vector<uid_t>{1001, 1002}));
  EXPECT_EQ(c.shared_groups, (std::vector<gid_t>{77}));
  EXPECT_EQ(c.groups, (std::vector<int>{3}));
  EXPECT_EQ(c.fd_name, "c-" + std::to_string(ring->id));
  EXPECT_EQ(record.containers[1].id, scratch->id);
  EXPECT_EQ(record.containers[1].name, "");
  EXPECT_EQ(record.containers[1].groups, (std::vector<int>{4}));

  ASSERT_EQ(record.mappings.size(), 2u);
  const auto& m = record.mappings[0];
  EXPECT_EQ(m.id, kbuf->mapping.id);
  EXPECT_EQ(m.container, ring->id);
  EXPECT_EQ(m.iova, kbuf->mapping.iova);
  EXPECT_EQ(m.size, 1u << 20);
  EXPECT_EQ(m.backing, kbuf->mapping.backing);
  EXPECT_EQ(m.fd_name, "m-" + std::to_string(kbuf->mapping.id));
  EXPECT_EQ(m.owner_uid, kUser);
  EXPECT_EQ(m.name, "kbuf");
  EXPECT_FALSE(m.mmio);
  const auto& b = record.mappings[1];
  EXPECT_EQ(b.id, bar->mapping.id);
  EXPECT_EQ(b.iova, bar->mapping.iova);
  EXPECT_EQ(b.backing, "bar");
  EXPECT_TRUE(b.mmio);
  EXPECT_EQ(b.fd_name, "");

  // Charges: the user's 1 MiB, one mapping, one container; root's BAR
  // mapping charges no bytes.
  std::map<uid_t, lifecycle::OwnerRecord> owners;
  for (const auto& o : record.owners) {
    owners[o.uid] = o;
  }
  ASSERT_TRUE(owners.contains(kUser));
  EXPECT_EQ(owners[kUser].locked_bytes, 1u << 20);
  EXPECT_EQ(owners[kUser].mappings, 1u);
  EXPECT_EQ(owners[kUser].containers, 1u);
  ASSERT_TRUE(owners.contains(0));
  EXPECT_EQ(owners[0].locked_bytes, 0u);
  EXPECT_EQ(owners[0].mappings, 1u);
  EXPECT_EQ(service_->Status().locked_bytes, owners[kUser].locked_bytes + owners[0].locked_bytes);

  // The record is one the decoder accepts, unchanged.
  auto decoded = lifecycle::DecodeStateRecord(lifecycle::EncodeStateRecord(record));
  ASSERT_TRUE(decoded) << decoded.error().message();
  EXPECT_EQ(*decoded, record);
}

TEST_F(SnapshotStateTest, FollowsFreesAndSessionEnds) {
  Caller user = Open(kUser);
  auto ring = service_->CreateContainer(user, {kEdu}, "ring", {});
  ASSERT_TRUE(ring);
  AllocRequest alloc;
  alloc.container = ring->id;
  alloc.size = 2 << 20;
  auto unnamed = service_->Alloc(user, alloc, {});
  ASSERT_TRUE(unnamed);
  alloc.name = "kept";
  auto named = service_->Alloc(user, alloc, {});
  ASSERT_TRUE(named);
  EXPECT_EQ(service_->SnapshotState().mappings.size(), 2u);

  ASSERT_TRUE(service_->FreeMapping(user, named->mapping.id));
  auto after_free = service_->SnapshotState();
  ASSERT_EQ(after_free.mappings.size(), 1u);
  EXPECT_EQ(after_free.mappings[0].id, unnamed->mapping.id);
  EXPECT_EQ(after_free.mappings[0].session, service_->SessionToken(user.session));
  EXPECT_EQ(after_free.mappings[0].session.size(), lifecycle::kSessionTokenLength);
  ASSERT_EQ(after_free.owners.size(), 1u);
  EXPECT_EQ(after_free.owners[0].locked_bytes, 2u << 20);

  // The session ends: its unnamed mapping goes, the named container stays.
  service_->CloseSession(user.session);
  auto after_close = service_->SnapshotState();
  EXPECT_TRUE(after_close.mappings.empty());
  ASSERT_EQ(after_close.containers.size(), 1u);
  EXPECT_EQ(after_close.containers[0].name, "ring");
  ASSERT_EQ(after_close.owners.size(), 1u);
  EXPECT_EQ(after_close.owners[0].locked_bytes, 0u);
  EXPECT_EQ(after_close.owners[0].containers, 1u);

  service_->Shutdown();
  auto after_shutdown = service_->SnapshotState();
  EXPECT_TRUE(after_shutdown.containers.empty());
  EXPECT_TRUE(after_shutdown.mappings.empty());
  EXPECT_TRUE(after_shutdown.owners.empty());
  EXPECT_GT(after_shutdown.next_id, ring->id);  // ids are never handed out twice
  EXPECT_GT(after_shutdown.mapping_generation, named->mapping.id >> 32);
}

}  // namespace
}  // namespace vfiod::service
