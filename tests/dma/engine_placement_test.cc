// Superpage placement and the other backings through the engine: IOVAs chosen
// congruent with the physical layout (fed by a synthetic pagemap), device BARs
// (peer to peer, not pinned), client memfds.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include "dma/backing_bar.h"
#include "engine_fixture.h"
#include "support/hugepage_pool.h"
#include "vfio/device.h"

namespace vfiod::dma::testing {
namespace {

constexpr const char* kIvshmem = "0000:00:04.0";
constexpr uint32_t kIvshmemBar2 = 2;

// A pagemap in which [vaddr, vaddr + len) is one physically contiguous run
// starting at `paddr`; every other page is absent. kpageflags are all zero.
class ContiguousReader final : public PageInfoReader {
 public:
  ContiguousReader(uint64_t vaddr, uint64_t len, uint64_t paddr)
      : first_vpn_(vaddr / kPage4K), pages_(len / kPage4K), first_pfn_(paddr / kPage4K) {}
  Result<void> ReadPagemap(uint64_t first_vpn, std::span<uint64_t> out) override {
    for (size_t i = 0; i < out.size(); ++i) {
      const uint64_t vpn = first_vpn + i;
      const bool inside = vpn >= first_vpn_ && vpn < first_vpn_ + pages_;
      out[i] = inside ? kPagemapPresent | (first_pfn_ + vpn - first_vpn_) : 0;
    }
    ++reads_;
    return Ok();
  }
  Result<void> ReadKpageflags(uint64_t, std::span<uint64_t> out) override {
    std::fill(out.begin(), out.end(), 0);
    return Ok();
  }
  int reads_ = 0;

 private:
  uint64_t first_vpn_;
  uint64_t pages_;
  uint64_t first_pfn_;
};

// A THP backing whose view is not 2 MiB aligned (the factories never make
// one): its geometry says nothing, so the map path scans.
std::shared_ptr<const Backing> MisalignedThp(uint64_t size) {
  auto memory = MapAligned(size + kPage2M, kPage2M, PROT_READ | PROT_WRITE,
                           MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  EXPECT_TRUE(memory) << memory.error().message();
  BackingParts parts;
  parts.kind = BackingKind::kThp;
  parts.vaddr = memory->vaddr() + kPage4K;
  parts.size = size;
  parts.memory = std::move(*memory);
  return std::make_shared<const Backing>(Backing(std::move(parts)));
}

TEST_F(EngineTest, WithoutAGeometryTheIovaIsCongruentWithTheScannedSuperpage) {
  auto backing = MisalignedThp(4 * kPage2M);
  // Physically contiguous, starting 12 KiB past a 2 MiB boundary.
  const uint64_t paddr = 0x40000000 + 0x3000;
  auto reader = std::make_unique<ContiguousReader>(backing->vaddr(), backing->size(), paddr);
  ContiguousReader* seen = reader.get();
  auto space = DmaSpace::Create(container_, {}, std::move(reader));
  ASSERT_TRUE(space) << space.error().message();
  auto report = (*space)->Map({.backing = backing});
  ASSERT_TRUE(report) << report.error().message();
  EXPECT_GT(seen->reads_, 0);
  EXPECT_EQ(report->congruence.modulus, kPage2M);
  EXPECT_EQ(report->congruence.residue, paddr % kPage2M);
  EXPECT_EQ(report->iova % kPage2M, paddr % kPage2M);  // so iova - paddr is 2 MiB aligned
  auto contiguity = (*space)->Contiguity(report->id);
  ASSERT_TRUE(contiguity) << contiguity.error().message();
  EXPECT_EQ(contiguity->state, PhysState::kKnown);
  EXPECT_EQ(contiguity->run_count, 1u);
}

TEST_F(EngineTest, FourKilobytePagesArePlacedWithoutReadingPagemap) {
  auto backing = Pages(4 * kPage2M);
  auto reader = std::make_unique<ContiguousReader>(backing->vaddr(), backing->size(), 0x40003000);
  ContiguousReader* seen = reader.get();
  auto space = DmaSpace::Create(container_, {}, std::move(reader));
  ASSERT_TRUE(space) << space.error().message();
  auto report = (*space)->Map({.backing = backing});
  ASSERT_TRUE(report) << report.error().message();
  EXPECT_EQ(seen->reads_, 0);
  EXPECT_EQ(report->congruence.modulus, kPage4K);
  // The report, asked for, reads the memory and sees the one run.
  auto contiguity = (*space)->Contiguity(report->id);
  ASSERT_TRUE(contiguity) << contiguity.error().message();
  EXPECT_GT(seen->reads_, 0);
  EXPECT_EQ(contiguity->run_count, 1u);
  EXPECT_EQ(contiguity->folios_4k, 4 * kPage2M / kPage4K);
}

TEST_F(EngineTest, ScatteredMemoryReportsItsAbsentPages) {
  auto backing = Pages(16 * kPage4K);
  // Only the first page is present.
  auto reader = std::make_unique<ContiguousReader>(backing->vaddr(), kPage4K, 0x1000000);
  auto space = DmaSpace::Create(container_, {}, std::move(reader));
  ASSERT_TRUE(space);
  auto report = (*space)->Map({.backing = backing});
  ASSERT_TRUE(report) << report.error().message();
  EXPECT_EQ(report->congruence.modulus, kPage4K);
  EXPECT_EQ((*space)->Contiguity(report->id)->pages_not_present, 15u);
  ASSERT_TRUE((*space)->Unmap(report->id));
  EXPECT_EQ((*space)->Contiguity(report->id).error().code, ENOENT);
}

TEST_F(EngineTest, DeviceBarIsMappedPeerToPeerWithoutPinning) {
  auto group = vfio::Group::Open(model_, kIvshmemGroup);
  ASSERT_TRUE(group) << group.error().message();
  ASSERT_TRUE((*group)->Attach(container_));
  auto device = vfio::Device::Open(*group, kIvshmem);
  ASSERT_TRUE(device) << device.error().message();
  auto bar = CreateBarBacking(*device, kIvshmemBar2);
  ASSERT_TRUE(bar) << bar.error().message();
  EXPECT_EQ(bar->kind(), BackingKind::kBar);
  EXPECT_TRUE(bar->mmio());
  EXPECT_EQ(bar->size(), uint64_t{64} << 20);
  EXPECT_EQ(bar->alignment(), uint64_t{64} << 20);
  EXPECT_TRUE(IsAligned(bar->vaddr(), bar->alignment()));
  auto shared = std::make_shared<const Backing>(std::move(*bar));
  const uint64_t locked = model_.LockedBytes();
  auto report = space_->Map({.backing = shared, .max_iova = (uint64_t{1} << 28) - 1});
  ASSERT_TRUE(report) << report.error().message();
  EXPECT_FALSE(report->pinned);
  EXPECT_EQ(report->backing, BackingKind::kBar);
  EXPECT_EQ(report->congruence.modulus, kPage2M);
  EXPECT_EQ(report->iova % kPage2M, 0u);
  EXPECT_EQ(model_.LockedBytes(), locked);  // MMIO is not charged
  EXPECT_EQ(space_->ShadowEntries(), ModelEntries());
  ASSERT_TRUE(space_->Unmap(report->id));
  EXPECT_TRUE(ModelEntries().empty());
}

TEST_F(EngineTest, BarBackingNeedsADevice) {
  auto bar = CreateBarBacking(nullptr, 0);
  ASSERT_FALSE(bar);
  EXPECT_EQ(bar.error().code, EINVAL);
}

TEST_F(EngineTest, ClientMemfdMapsAtItsOffset) {
  UniqueFd fd(::memfd_create("client", MFD_CLOEXEC | MFD_ALLOW_SEALING));
  ASSERT_TRUE(fd.valid());
  ASSERT_EQ(::ftruncate(fd.get(), 8 * kPage4K), 0);
  auto backing = AdoptClientFd(std::move(fd), 4 * kPage4K, 4 * kPage4K);
  ASSERT_TRUE(backing) << backing.error().message();
  auto shared = std::make_shared<const Backing>(std::move(*backing));
  auto report = space_->Map({.backing = shared, .fixed_iova = 0x300000});
  ASSERT_TRUE(report) << report.error().message();
  EXPECT_EQ(report->backing, BackingKind::kMemfd);
  EXPECT_EQ(model_.Entries(container_->fd())->front().vaddr, shared->vaddr());
  EXPECT_EQ(model_.LockedBytes(), 4 * kPage4K);
}

TEST_F(EngineTest, ThpBackingIsPlacedForPmdFoliosAndScannedOnDemand) {
  auto backing = CreateThpBacking(2 * kPage2M, false);
  ASSERT_TRUE(backing) << backing.error().message();
  auto shared = std::make_shared<const Backing>(std::move(*backing));
  auto report = space_->Map({.backing = shared});
  ASSERT_TRUE(report) << report.error().message();
  EXPECT_EQ(report->iova % report->congruence.modulus, report->congruence.residue);
  // The backing is 2 MiB aligned: placed for PMD-sized folios, whatever the kernel gave.
  EXPECT_EQ(report->congruence.modulus, kPage2M);
  EXPECT_EQ(report->iova % kPage2M, 0u);
  auto contiguity = space_->Contiguity(report->id);
  ASSERT_TRUE(contiguity) << contiguity.error().message();
  EXPECT_EQ(contiguity->pages, 2 * kPage2M / kPage4K);
}

// Maps 8 KiB from the middle of a 2 MiB hugetlb page (a range the scan cannot
// treat as whole folios). Reserves one 2 MiB page for the test, under the
// pool's lock; the pool goes back after the backing (declared later) is gone.
TEST_F(EngineTest, PartOfAHugePageMaps) {
  const ::vfiod::testing::HugepagePool2M pool(1);
  if (!pool.ok()) {
    GTEST_SKIP() << "cannot reserve a 2 MiB hugepage here (needs root and free memory)";
  }
  auto backing = CreateHugetlbBacking(kPage2M, kPage2M);
  ASSERT_TRUE(backing) << backing.error().message();
  auto shared = std::make_shared<const Backing>(std::move(*backing));
  auto report = space_->Map({.backing = shared, .offset = 3 * kPage4K, .size = 2 * kPage4K});
  ASSERT_TRUE(report) << report.error().message();
  EXPECT_EQ(report->size, 2 * kPage4K);
  EXPECT_EQ(report->vaddr, shared->vaddr() + 3 * kPage4K);
  EXPECT_EQ(ModelEntries(), (std::vector<Entry>{{report->iova, 2 * kPage4K}}));
}

}  // namespace
}  // namespace vfiod::dma::testing
