// Locked memory in the service core on the model kernel: the daemon-wide cap
// (limits.max_locked_bytes, root included) and the charge of a registered
// hugetlbfs region (held while vfiod holds its pages, never charged twice by
// the slices mapped from it). The hugetlb tests use real 2 MiB pages of the
// host's pool (raised for the test, as root), with the model kernel's IOMMU.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <linux/memfd.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "config_test_util.h"
#include "model_service.h"
#include "service/config.h"
#include "service/service.h"
#include "support/hugepage_pool.h"
#include "support/open_fds.h"

namespace vfiod::service {
namespace {

using model_service::EduConfig;
using model_service::kEdu;
using model_service::kIvshmem;
using ::testing::HasSubstr;
using ::vfiod::testing::CountOpenFds;
using ::vfiod::testing::HugepagePool2M;

constexpr uid_t kUser = 1000;
constexpr uint64_t k2M = 2 << 20;

// --- the config key and its default ----------------------------------------------

Result<Config> Parse(std::string_view text) { return ParseConfig(text, testing::FakeNames()); }

TEST(MaxLockedBytesConfigTest, TakesSizesUnlimitedAndNull) {
  auto sized = Parse(R"({"limits": {"max_locked_bytes": "8G"}})");
  ASSERT_TRUE(sized.has_value()) << sized.error().message();
  EXPECT_EQ(sized->limits.max_locked_bytes, 8ULL << 30);
  auto none = Parse(R"({"limits": {"max_locked_bytes": "unlimited"}})");
  ASSERT_TRUE(none.has_value());
  EXPECT_EQ(none->limits.max_locked_bytes, kUnlimited);
  auto null = Parse(R"({"limits": {"max_locked_bytes": null}})");
  ASSERT_TRUE(null.has_value());
  EXPECT_FALSE(null->limits.max_locked_bytes.has_value());
  EXPECT_FALSE(Parse("{}")->limits.max_locked_bytes.has_value());
  auto bad = Parse(R"({"limits": {"max_locked_bytes": "lots"}})");
  ASSERT_FALSE(bad.has_value());
  EXPECT_THAT(bad.error().detail, HasSubstr("limits.max_locked_bytes"));
  EXPECT_FALSE(Parse(R"({"limits": {"max_locked_bytes": -1}})").has_value());
}

TEST(MaxLockedBytesConfigTest, DefaultIsThreeQuartersOfMemTotal) {
  EXPECT_EQ(DefaultMaxLockedBytes("MemTotal:       16777216 kB\nMemFree: 1 kB\n"), 12ULL << 30);
  EXPECT_EQ(DefaultMaxLockedBytes("Other: 5 kB\nMemTotal: 4096 kB\n"), 3ULL << 20);
  EXPECT_FALSE(DefaultMaxLockedBytes("MemFree: 1 kB\n").has_value());
  EXPECT_FALSE(DefaultMaxLockedBytes("MemTotal: lots kB\n").has_value());
  EXPECT_FALSE(DefaultMaxLockedBytes("MemTotal: 0 kB\n").has_value());
  Limits set;
  set.max_locked_bytes = 5 << 20;
  EXPECT_EQ(ResolveMaxLockedBytes(set, "/nonexistent"), 5u << 20);
  EXPECT_EQ(ResolveMaxLockedBytes(Limits{}, "/nonexistent"), kUnlimited);
  // This machine's /proc/meminfo gives a finite cap below its memory.
  const uint64_t cap = ResolveMaxLockedBytes(Limits{});
  EXPECT_NE(cap, kUnlimited);
  EXPECT_GT(cap, 0u);
}

// --- the service ---------------------------------------------------------------------

/// kUser may use edu with a 4 MiB quota; the daemon-wide cap is `cap`.
Config CappedConfig(uint64_t cap) {
  Config config = EduConfig(kUser, Quota{.locked_bytes = 4 << 20, .mappings = 4, .containers = 1});
  config.limits.max_locked_bytes = cap;
  return config;
}

class LockedMemoryTest : public model_service::ModelServiceTest {
 protected:
  explicit LockedMemoryTest(uint64_t cap = 3 << 20) { Start(CappedConfig(cap)); }
  ContainerId Container(const Caller& who, const char* bdf) {
    auto c = service_->CreateContainer(who, {bdf}, "");
    EXPECT_TRUE(c.has_value()) << c.error().error.message();
    return c ? c->id : 0;
  }
  SResult<MapResult> Alloc(const Caller& who, ContainerId c, uint64_t size) {
    AllocRequest r;
    r.container = c;
    r.size = size;
    return service_->Alloc(who, r, {});
  }
};

TEST_F(LockedMemoryTest, CapBoundsAllClientsTogetherRootIncluded) {
  Caller root = Open(0);
  Caller user = Open(kUser);
  const ContainerId rc = Container(root, kIvshmem);
  const ContainerId uc = Container(user, kEdu);
  auto first = Alloc(root, rc, k2M);
  ASSERT_TRUE(first.has_value()) << first.error().error.message();
  // Within the user's own 4 MiB quota, but 2 + 2 MiB is past the 3 MiB cap.
  const uint64_t maps = faulty_->IoctlCalls("VFIO_IOMMU_MAP_DMA");
  auto over = Alloc(user, uc, k2M);
  ASSERT_FALSE(over.has_value());
  EXPECT_EQ(over.error().kind, ErrorKind::kQuota);
  EXPECT_EQ(over.error().error.code, EDQUOT);
  EXPECT_THAT(over.error().error.detail, HasSubstr("limits.max_locked_bytes"));
  EXPECT_EQ(faulty_->IoctlCalls("VFIO_IOMMU_MAP_DMA"), maps);  // refused before any ioctl
  ASSERT_TRUE(Alloc(user, uc, 1 << 20).has_value());
  // Root's quota is unlimited; the cap still holds it.
  auto root_over = Alloc(root, rc, 4096);
  ASSERT_FALSE(root_over.has_value());
  EXPECT_EQ(root_over.error().kind, ErrorKind::kQuota);
  EXPECT_THAT(root_over.error().error.detail, HasSubstr("limits.max_locked_bytes"));
  StatusView s = service_->Status();
  EXPECT_EQ(s.locked_bytes, 3u << 20);
  EXPECT_EQ(s.max_locked_bytes, 3u << 20);
  EXPECT_EQ(s.region_locked_bytes, 0u);
  // Freeing gives room back to everyone.
  ASSERT_TRUE(service_->FreeMapping(root, first->mapping.id).has_value());
  EXPECT_TRUE(Alloc(user, uc, k2M).has_value());
  service_->CloseSession(user.session);
  service_->CloseSession(root.session);
  EXPECT_EQ(service_->Status().locked_bytes, 0u);
  EXPECT_EQ(model_.LockedBytes(), 0u);
}

TEST_F(LockedMemoryTest, MmioMappingsAreOutsideTheCap) {
  Caller root = Open(0);
  const ContainerId rc = Container(root, kIvshmem);
  ASSERT_TRUE(Alloc(root, rc, 3 << 20).has_value());
  auto bar = service_->MapBar(root, MapBarRequest{rc, kIvshmem, 0, {}, ""});
  ASSERT_TRUE(bar.has_value()) << bar.error().error.message();
  EXPECT_EQ(service_->Status().locked_bytes, 3u << 20);
}

// A registered memfd (shmem) is not charged until a slice of it is mapped.
TEST_F(LockedMemoryTest, MemfdRegionIsChargedOnlyByItsSlices) {
  Caller user = Open(kUser);
  const ContainerId uc = Container(user, kEdu);
  UniqueFd fd(
      static_cast<int>(::syscall(SYS_memfd_create, "locked-svc", MFD_CLOEXEC | MFD_ALLOW_SEALING)));
  ASSERT_EQ(::ftruncate(fd.get(), 8 << 20), 0);
  auto region = service_->RegisterRegion(user, RegisterRequest{std::move(fd), 0, 0});
  ASSERT_TRUE(region.has_value()) << region.error().error.message();
  EXPECT_EQ(service_->Status().locked_bytes, 0u);
  ASSERT_TRUE(Slice(user, uc, region->id, 0, k2M).has_value());
  EXPECT_EQ(service_->Status().locked_bytes, k2M);
  EXPECT_EQ(service_->Status().region_locked_bytes, 0u);
}

// Real 2 MiB pages: a hugetlbfs memfd of `pages` pages, allocated.
class HugetlbRegionTest : public LockedMemoryTest {
 protected:
  HugetlbRegionTest() : LockedMemoryTest(8 << 20) {}
  void SetUp() override {
    if (!pool_.ok()) {
      GTEST_SKIP() << "cannot reserve 2 MiB hugepages (needs root and free memory)";
    }
    free_before_ = HugepagePool2M::Free();
  }
  UniqueFd HugeFile(uint64_t pages) { return UniqueFd(HugepagePool2M::Memfd(pages * k2M)); }
  HugepagePool2M pool_{6};
  uint64_t free_before_ = 0;
};

TEST_F(HugetlbRegionTest, RegisterChargesTheRegionAndSlicesChargeNothingMore) {
  Caller user = Open(kUser);
  const ContainerId uc = Container(user, kEdu);
  UniqueFd file = HugeFile(2);
  ASSERT_TRUE(file.valid());
  auto region = service_->RegisterRegion(user, RegisterRequest{std::move(file), 0, 0});
  ASSERT_TRUE(region.has_value()) << region.error().error.message();
  EXPECT_EQ(region->page_size, k2M);
  StatusView s = service_->Status();
  EXPECT_EQ(s.region_locked_bytes, 4u << 20);
  EXPECT_EQ(s.locked_bytes, 4u << 20);
  // The 4 MiB quota is spent by the registration alone.
  auto more = Alloc(user, uc, 4096);
  ASSERT_FALSE(more.has_value());
  EXPECT_EQ(more.error().kind, ErrorKind::kQuota);
  EXPECT_THAT(more.error().error.detail, HasSubstr("locked_bytes"));
  // Slices of the region are its pages: no further charge, even overlapping.
  auto whole = Slice(user, uc, region->id, 0, 4 << 20);
  ASSERT_TRUE(whole.has_value()) << whole.error().error.message();
  auto again = Slice(user, uc, region->id, k2M, k2M);
  ASSERT_TRUE(again.has_value()) << again.error().error.message();
  EXPECT_EQ(service_->Status().locked_bytes, 4u << 20);
  EXPECT_EQ(service_->Status().mappings, 2u);
  // Unregistered while mapped: the mappings still hold the pages, so the
  // charge stays until the last of them is freed.
  ASSERT_TRUE(service_->UnregisterRegion(user, region->id).has_value());
  EXPECT_EQ(service_->Status().region_locked_bytes, 4u << 20);
  ASSERT_TRUE(service_->FreeMapping(user, whole->mapping.id).has_value());
  EXPECT_EQ(service_->Status().region_locked_bytes, 4u << 20);
  ASSERT_TRUE(service_->FreeMapping(user, again->mapping.id).has_value());
  s = service_->Status();
  EXPECT_EQ(s.region_locked_bytes, 0u);
  EXPECT_EQ(s.locked_bytes, 0u);
  EXPECT_EQ(HugepagePool2M::Free(), free_before_);    // the pages are back
  EXPECT_TRUE(Alloc(user, uc, 4 << 20).has_value());  // and so is the quota
}

TEST_F(HugetlbRegionTest, UnregisterAndSessionCloseGiveTheChargeBack) {
  Caller user = Open(kUser);
  auto first = service_->RegisterRegion(user, RegisterRequest{HugeFile(1), 0, 0});
  ASSERT_TRUE(first.has_value()) << first.error().error.message();
  ASSERT_TRUE(service_->UnregisterRegion(user, first->id).has_value());
  EXPECT_EQ(service_->Status().locked_bytes, 0u);
  auto second = service_->RegisterRegion(user, RegisterRequest{HugeFile(2), 0, 0});
  ASSERT_TRUE(second.has_value()) << second.error().error.message();
  EXPECT_EQ(service_->Status().locked_bytes, 4u << 20);
  service_->CloseSession(user.session);
  EXPECT_EQ(service_->Status().locked_bytes, 0u);
  EXPECT_EQ(HugepagePool2M::Free(), free_before_);
}

TEST_F(HugetlbRegionTest, RegionBeyondTheQuotaOrTheCapIsRefusedAndLeaksNothing) {
  Caller user = Open(kUser);
  const int fds = CountOpenFds();
  auto over = service_->RegisterRegion(user, RegisterRequest{HugeFile(3), 0, 0});
  ASSERT_FALSE(over.has_value());
  EXPECT_EQ(over.error().kind, ErrorKind::kQuota);
  EXPECT_THAT(over.error().error.detail, HasSubstr("locked_bytes: 0 in use + 6291456 asked"));
  EXPECT_EQ(CountOpenFds(), fds);
  EXPECT_EQ(HugepagePool2M::Free(), free_before_);
  EXPECT_TRUE(service_->ListRegions(user).empty());
  // Root has no quota, but 8 MiB of regions and the cap (8 MiB) is reached.
  Caller root = Open(0);
  auto big = service_->RegisterRegion(root, RegisterRequest{HugeFile(4), 0, 0});
  ASSERT_TRUE(big.has_value()) << big.error().error.message();
  auto capped = service_->RegisterRegion(root, RegisterRequest{HugeFile(1), 0, 0});
  ASSERT_FALSE(capped.has_value());
  EXPECT_EQ(capped.error().kind, ErrorKind::kQuota);
  EXPECT_THAT(capped.error().error.detail, HasSubstr("limits.max_locked_bytes"));
  EXPECT_EQ(service_->ListRegions(root).size(), 1u);
  EXPECT_EQ(service_->Status().locked_bytes, 8u << 20);
}

}  // namespace
}  // namespace vfiod::service
