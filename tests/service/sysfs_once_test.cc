// What the DMA paths read from sysfs, and how often (issue 15: on a fast
// kernel the reads were most of dma.map_bar's own time). dma.map_bar reads a
// device's facts once per container: the second map in the same container
// uses the facts the first one kept, while a new container reads them
// again; the policy is still asked on every call. dma.alloc reads its
// devices' NUMA node once per container. Proven by changing the fake sysfs
// tree between calls, not by timing.
#include <gtest/gtest.h>

#include <filesystem>

#include "model_service.h"
#include "service/service.h"

namespace vfiod::service {
namespace {

using model_service::kEdu;
using model_service::kIvshmem;
namespace fs = std::filesystem;

constexpr uid_t kUser = 1000;

class SysfsOnceTest : public model_service::ModelServiceTest {
 protected:
  SysfsOnceTest() {
    // kUser may use edu, not ivshmem; root may use anything.
    Start(model_service::EduConfig(kUser, Quota{}));
    admin_ = Open(0);
  }
  SResult<MapResult> MapBar(const Caller& who, ContainerId c, const char* bdf = kIvshmem) {
    return service_->MapBar(who, MapBarRequest{c, bdf, 0, {}, ""});
  }
  /// Makes `bdf` look like a device without BARs (its resource file empty).
  void DropBars(const char* bdf) {
    model_service::Write(root_ / "bus/pci/devices" / bdf / "resource", "");
  }

  Caller admin_;
};

TEST_F(SysfsOnceTest, MapBarReadsTheDeviceOncePerContainer) {
  auto c = service_->CreateContainer(admin_, {kEdu, kIvshmem}, "");
  ASSERT_TRUE(c.has_value()) << c.error().error.message();
  auto first = MapBar(admin_, c->id);
  ASSERT_TRUE(first.has_value()) << first.error().error.message();
  DropBars(kIvshmem);
  // The same container: the facts kept by the first map (no sysfs read).
  auto second = MapBar(admin_, c->id);
  ASSERT_TRUE(second.has_value()) << second.error().error.message();
  EXPECT_EQ(second->mapping.size, first->mapping.size);
  EXPECT_NE(second->mapping.iova, first->mapping.iova);
  // A new container reads sysfs again, and now finds no BAR there.
  ASSERT_TRUE(service_->DestroyContainer(admin_, c->id).has_value());
  auto d = service_->CreateContainer(admin_, {kIvshmem}, "");
  ASSERT_TRUE(d.has_value()) << d.error().error.message();
  auto third = MapBar(admin_, d->id);
  ASSERT_FALSE(third.has_value());
  EXPECT_EQ(third.error().kind, ErrorKind::kInvalidParams) << third.error().error.message();
}

TEST_F(SysfsOnceTest, TheKeptFactsStillGoThroughThePolicy) {
  auto c = service_->CreateContainer(admin_, {kEdu, kIvshmem}, "");
  ASSERT_TRUE(c.has_value()) << c.error().error.message();
  const Caller user = Open(kUser);
  auto before = MapBar(user, c->id);
  ASSERT_FALSE(before.has_value());
  EXPECT_EQ(before.error().kind, ErrorKind::kPermission);
  ASSERT_TRUE(MapBar(admin_, c->id).has_value());  // the container keeps ivshmem's facts
  auto after = MapBar(user, c->id);
  ASSERT_FALSE(after.has_value());
  EXPECT_EQ(after.error().kind, ErrorKind::kPermission) << after.error().error.message();
}

TEST_F(SysfsOnceTest, AllocReadsTheDevicesNodeOncePerContainer) {
  // Two containers, one device each; both devices say "no node" at first.
  auto a = service_->CreateContainer(admin_, {kEdu}, "");
  auto b = service_->CreateContainer(admin_, {kIvshmem}, "");
  ASSERT_TRUE(a.has_value() && b.has_value());
  AllocRequest request;
  request.size = 64 << 10;
  request.container = a->id;
  auto first = service_->Alloc(admin_, request, {});
  ASSERT_TRUE(first.has_value()) << first.error().error.message();
  ASSERT_TRUE(first->mapping.numa.has_value());
  EXPECT_EQ(first->mapping.numa->source, "none");
  for (const char* bdf : {kEdu, kIvshmem}) {
    model_service::Write(root_ / "bus/pci/devices" / bdf / "numa_node", "0\n");
  }
  // A container that never allocated reads the new node (when this host has
  // a node 0 online: otherwise it is no preference either way).
  request.container = b->id;
  auto fresh = service_->Alloc(admin_, request, {});
  ASSERT_TRUE(fresh.has_value()) << fresh.error().error.message();
  if (fresh->mapping.numa->source != "device") {
    GTEST_SKIP() << "no NUMA node 0 online on this host";
  }
  // The first container keeps what it read.
  request.container = a->id;
  auto again = service_->Alloc(admin_, request, {});
  ASSERT_TRUE(again.has_value()) << again.error().error.message();
  EXPECT_EQ(again->mapping.numa->source, "none");
}

}  // namespace
}  // namespace vfiod::service
