// Registered regions in the service core on the model kernel: a region is
// its session's alone, outlives dma.unregister while mapped, and 65535 slices
// of one region can be mapped and freed (the type1 entry limit), with the
// service's and engine's heap per mapping printed (mallinfo2; not asserted:
// heap figures depend on the allocator, and read 0 under ASan).
#include <gtest/gtest.h>
#include <linux/memfd.h>
#include <malloc.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdio>

#include "model_service.h"
#include "service/service.h"

namespace vfiod::service {
namespace {

UniqueFd Memfd(uint64_t size) {
  UniqueFd fd(
      static_cast<int>(::syscall(SYS_memfd_create, "region-svc", MFD_CLOEXEC | MFD_ALLOW_SEALING)));
  if (!fd.valid() || ::ftruncate(fd.get(), static_cast<off_t>(size)) != 0) {
    return UniqueFd();
  }
  return fd;
}

class RegionServiceTest : public model_service::ModelServiceTest {
 protected:
  RegionServiceTest() {
    Config config;
    config.limits.max_regions = 2;
    Start(config);
  }
  Caller Open() {
    Identity id{0, 0, {}};
    return Caller{service_->OpenSession(id), id};
  }
  RegionId Register(const Caller& who, uint64_t size) {
    auto r = service_->RegisterRegion(who, RegisterRequest{Memfd(size), 0, 0});
    EXPECT_TRUE(r.has_value()) << r.error().error.message();
    return r ? r->id : 0;
  }
};

TEST_F(RegionServiceTest, RegionsBelongToTheirSessionAndAreCapped) {
  Caller a = Open();
  Caller b = Open();
  auto c = service_->CreateContainer(a, {model_service::kEdu}, "");
  ASSERT_TRUE(c.has_value());
  RegionId region = Register(a, 1 << 20);
  EXPECT_EQ(service_->ListRegions(a).size(), 1u);
  EXPECT_TRUE(service_->ListRegions(b).empty());
  auto foreign = service_->UnregisterRegion(b, region);
  ASSERT_FALSE(foreign.has_value());
  EXPECT_EQ(foreign.error().kind, ErrorKind::kNotFound);
  Register(a, 4096);
  auto over = service_->RegisterRegion(a, RegisterRequest{Memfd(4096), 0, 0});
  ASSERT_FALSE(over.has_value());
  EXPECT_EQ(over.error().kind, ErrorKind::kQuota);
  // Closing the session releases its regions (and makes the cap count anew).
  auto m = Slice(a, c->id, region, 0, 4096);
  ASSERT_TRUE(m.has_value()) << m.error().error.message();
  service_->CloseSession(a.session);
  EXPECT_TRUE(service_->ListRegions(a).empty());
  EXPECT_EQ(service_->Status().mappings, 0u);
}

TEST_F(RegionServiceTest, FullEntryLimitOfSlicesOfOneRegion) {
  constexpr uint64_t kMappings = 65535;  // the model's (and type1's) DMA entry limit
  constexpr uint64_t kSlice = 4096;
  Caller a = Open();
  auto c = service_->CreateContainer(a, {model_service::kEdu}, "");
  ASSERT_TRUE(c.has_value());
  RegionId region = Register(a, kMappings * kSlice);
  std::vector<MappingId> ids;
  ids.reserve(kMappings);
  const size_t heap_before = mallinfo2().uordblks;
  for (uint64_t i = 0; i < kMappings; ++i) {
    auto m = Slice(a, c->id, region, i * kSlice, kSlice);
    ASSERT_TRUE(m.has_value()) << i << ": " << m.error().error.message();
    ids.push_back(m->mapping.id);
  }
  const size_t heap_after = mallinfo2().uordblks;
  StatusView s = service_->Status();
  EXPECT_EQ(s.mappings, kMappings);
  EXPECT_EQ(s.dma_entries, kMappings);
  EXPECT_EQ(s.locked_bytes, kMappings * kSlice);
  // The next slice finds no entry left: the kernel's (model's) ENOSPC.
  EXPECT_FALSE(Slice(a, c->id, region, 0, kSlice).has_value());
  std::printf("heap per mapping (service + engine + model kernel, mallinfo2): %.1f bytes\n",
              static_cast<double>(heap_after - heap_before) / kMappings);
  RecordProperty("heap_bytes_per_mapping", std::to_string((heap_after - heap_before) / kMappings));
  // A mapping listed and described from its compact record and the engine's.
  auto info = service_->MappingInfo(a, ids[12345]);
  ASSERT_TRUE(info.has_value());
  EXPECT_EQ(info->size, kSlice);
  EXPECT_EQ(info->chunks, 1u);
  auto listed = service_->ListMappings(a, c->id);
  ASSERT_TRUE(listed.has_value());
  EXPECT_EQ(listed->size(), kMappings);
  for (MappingId id : ids) {
    ASSERT_TRUE(service_->FreeMapping(a, id).has_value()) << id;
  }
  s = service_->Status();
  EXPECT_EQ(s.mappings, 0u);
  EXPECT_EQ(s.dma_entries, 0u);
  EXPECT_EQ(s.locked_bytes, 0u);
  // Freed ids are not handed out again.
  auto again = Slice(a, c->id, region, 0, kSlice);
  ASSERT_TRUE(again.has_value());
  EXPECT_EQ(std::count(ids.begin(), ids.end(), again->mapping.id), 0);
  EXPECT_FALSE(service_->FreeMapping(a, ids.front()).has_value());
}

}  // namespace
}  // namespace vfiod::service
