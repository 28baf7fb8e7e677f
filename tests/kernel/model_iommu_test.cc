// The type1v2 rules of the model's IOMMU, through the typed ioctls.
#include <gtest/gtest.h>
#include <linux/vfio.h>

#include <thread>
#include <vector>

#include "model_fixture.h"

namespace vfiod::kernel::testing {
namespace {

using IommuModel = ModelFixture;

TEST_F(IommuModel, InfoReportsRangesPageSizesAndEntries) {
  auto info = GetIommuInfo(k_, container_.get());
  ASSERT_TRUE(info) << info.error().message();
  EXPECT_EQ(info->iova_pgsizes, 0x40201000u);
  EXPECT_EQ(info->iova_ranges,
            (std::vector<IovaRange>{{0, 0xfedfffff}, {0xfef00000, 0x7fffffffff}}));
  EXPECT_EQ(info->dma_avail, 65535u);
  ASSERT_TRUE(info->migration.has_value());
  EXPECT_EQ(info->migration->pgsize_bitmap, 0x40201000u);
  EXPECT_EQ(info->migration->max_dirty_bitmap_size, 0x10000000u);
  // The fixed part was too small for the chain: one re-query with a bigger argsz.
  EXPECT_EQ(k_.IoctlCount("VFIO_IOMMU_GET_INFO"), 2u);
}

TEST_F(IommuModel, OldAbiArgszGetsNoCapabilities) {
  vfio_iommu_type1_info info{};
  info.argsz = offsetof(vfio_iommu_type1_info, cap_offset);  // pre-capability size
  info.cap_offset = 0xdead;
  ASSERT_TRUE(k_.ioctl(container_.get(), VFIO_IOMMU_GET_INFO, &info));
  EXPECT_EQ(info.iova_pgsizes, 0x40201000u);
  EXPECT_EQ(info.cap_offset, 0xdeadu);  // not written back: outside minsz
  info.argsz = 8;
  EXPECT_EQ(Errno(k_.ioctl(container_.get(), VFIO_IOMMU_GET_INFO, &info)), EINVAL);
}

TEST_F(IommuModel, MapUnmapRoundTripChargesAndReleasesLockedMemory) {
  Buffer buf(4 * kPage);
  ASSERT_TRUE(Map(buf.vaddr(), 0x100000, 4 * kPage));
  auto maps = k_.Entries(container_.get()).value();
  ASSERT_EQ(maps.size(), 1u);
  EXPECT_EQ(maps[0].iova, 0x100000u);
  EXPECT_EQ(maps[0].vaddr, buf.vaddr());
  EXPECT_EQ(k_.LockedBytes(), 4 * kPage);
  EXPECT_EQ(GetIommuInfo(k_, container_.get())->dma_avail, 65534u);
  EXPECT_EQ(UnmapDma(k_, container_.get(), 0x100000, 4 * kPage).value(), 4 * kPage);
  EXPECT_EQ(k_.LockedBytes(), 0u);
  EXPECT_EQ(GetIommuInfo(k_, container_.get())->dma_avail, 65535u);
}

TEST_F(IommuModel, OverlapIsEexist) {
  Buffer buf(4 * kPage);
  ASSERT_TRUE(Map(buf.vaddr(), 0x100000, 2 * kPage));
  EXPECT_EQ(Errno(Map(buf.vaddr(), 0x100000, 2 * kPage)), EEXIST);
  EXPECT_EQ(Errno(Map(buf.vaddr(), 0x100000 + kPage, 2 * kPage)), EEXIST);
  EXPECT_EQ(Errno(Map(buf.vaddr(), 0x100000 - kPage, 2 * kPage)), EEXIST);
  EXPECT_EQ(Errno(Map(buf.vaddr(), 0x100000 - kPage, 4 * kPage)), EEXIST);
  EXPECT_TRUE(Map(buf.vaddr(), 0x100000 + 2 * kPage, kPage));  // adjacent is fine
  EXPECT_EQ(MappingCount(), 2u);
}

TEST_F(IommuModel, IovaOutsideTheRangesIsEinval) {
  Buffer buf(2 * kPage);
  EXPECT_EQ(Errno(Map(buf.vaddr(), 0xfee00000, kPage)), EINVAL);      // MSI window
  EXPECT_EQ(Errno(Map(buf.vaddr(), 0xfedff000, 2 * kPage)), EINVAL);  // straddles it
  EXPECT_EQ(Errno(Map(buf.vaddr(), 0x8000000000, kPage)), EINVAL);    // above 39 bits
  EXPECT_TRUE(Map(buf.vaddr(), 0xfedff000, kPage));                   // last page below
  EXPECT_TRUE(Map(buf.vaddr(), 0x7ffffff000, kPage));                 // last page of all
  EXPECT_EQ(MappingCount(), 2u);
}

TEST_F(IommuModel, RawMapChecksAlignmentWrapAndFlags) {
  Buffer buf(2 * kPage);
  vfio_iommu_type1_dma_map m{};
  m.argsz = sizeof m;
  m.flags = VFIO_DMA_MAP_FLAG_READ;
  m.vaddr = buf.vaddr();
  m.iova = 0x1000 + 512;
  m.size = kPage;
  EXPECT_EQ(Errno(k_.ioctl(container_.get(), VFIO_IOMMU_MAP_DMA, &m)), EINVAL);  // unaligned
  m.iova = ~uint64_t{0} - kPage + 1;
  m.size = 2 * kPage;
  EXPECT_EQ(Errno(k_.ioctl(container_.get(), VFIO_IOMMU_MAP_DMA, &m)), EINVAL);  // wraps
  m.iova = 0x1000;
  m.size = 0;
  EXPECT_EQ(Errno(k_.ioctl(container_.get(), VFIO_IOMMU_MAP_DMA, &m)), EINVAL);  // empty
  m.size = kPage;
  m.flags = 0;
  EXPECT_EQ(Errno(k_.ioctl(container_.get(), VFIO_IOMMU_MAP_DMA, &m)), EINVAL);  // no access
  m.flags = VFIO_DMA_MAP_FLAG_READ | (1u << 7);
  EXPECT_EQ(Errno(k_.ioctl(container_.get(), VFIO_IOMMU_MAP_DMA, &m)), EINVAL);  // unknown flag
  m.flags = VFIO_DMA_MAP_FLAG_READ;
  m.argsz = 8;
  EXPECT_EQ(Errno(k_.ioctl(container_.get(), VFIO_IOMMU_MAP_DMA, &m)), EINVAL);  // short argsz
  EXPECT_EQ(MappingCount(), 0u);
}

TEST_F(IommuModel, UnmapNeverSplitsAndReportsWholeMappings) {
  Buffer buf(4 * kPage);
  ASSERT_TRUE(Map(buf.vaddr(), 0x100000, 2 * kPage));
  ASSERT_TRUE(Map(buf.vaddr() + 2 * kPage, 0x100000 + 2 * kPage, 2 * kPage));
  EXPECT_EQ(Errno(UnmapDma(k_, container_.get(), 0x100000, kPage)), EINVAL);
  EXPECT_EQ(Errno(UnmapDma(k_, container_.get(), 0x100000 + kPage, 2 * kPage)), EINVAL);
  EXPECT_EQ(UnmapDma(k_, container_.get(), 0x200000, kPage).value(), 0u);  // covers nothing
  EXPECT_EQ(MappingCount(), 2u);
  // A range spanning both mappings (and empty space around) removes both.
  EXPECT_EQ(UnmapDma(k_, container_.get(), 0x0f0000, 0x20000).value(), 4 * kPage);
  EXPECT_EQ(MappingCount(), 0u);
}

TEST_F(IommuModel, UnmapAllRemovesEverything) {
  Buffer buf(3 * kPage);
  for (uint64_t i = 0; i < 3; ++i) {
    ASSERT_TRUE(Map(buf.vaddr() + i * kPage, 0x100000 + i * 0x10000, kPage));
  }
  EXPECT_EQ(UnmapAllDma(k_, container_.get()).value(), 3 * kPage);
  EXPECT_EQ(MappingCount(), 0u);
  EXPECT_EQ(k_.LockedBytes(), 0u);
  vfio_iommu_type1_dma_unmap u{};
  u.argsz = sizeof u;
  u.flags = VFIO_DMA_UNMAP_FLAG_ALL;
  u.iova = 0x1000;  // FLAG_ALL needs iova = size = 0
  EXPECT_EQ(Errno(k_.ioctl(container_.get(), VFIO_IOMMU_UNMAP_DMA, &u)), EINVAL);
}

TEST_F(IommuModel, UnmappedVaddrIsEfault) {
  Buffer buf(2 * kPage);
  ASSERT_EQ(::munmap(static_cast<char*>(buf.get()) + kPage, kPage), 0);  // a hole
  EXPECT_EQ(Errno(Map(buf.vaddr(), 0x100000, 2 * kPage)), EFAULT);
  EXPECT_EQ(MappingCount(), 0u);
  EXPECT_EQ(k_.LockedBytes(), 0u);
  EXPECT_TRUE(Map(buf.vaddr(), 0x100000, kPage));
}

TEST_F(IommuModel, DeviceWritesNeedWritableMemory) {
  void* ro = ::mmap(nullptr, 2 * kPage, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(ro, MAP_FAILED);
  auto vaddr = reinterpret_cast<uint64_t>(ro);
  EXPECT_EQ(Errno(Map(vaddr, 0x100000, kPage)), EFAULT);
  EXPECT_TRUE(MapDma(k_, container_.get(), DmaMap{vaddr, 0x100000, kPage, true, false}));
  // Half writable, half not: the whole range must qualify.
  ASSERT_EQ(::mprotect(ro, kPage, PROT_READ | PROT_WRITE), 0);
  EXPECT_EQ(Errno(Map(vaddr, 0x200000, 2 * kPage)), EFAULT);
  EXPECT_TRUE(Map(vaddr, 0x200000, kPage));
  ASSERT_EQ(::mprotect(ro, 2 * kPage, PROT_NONE), 0);
  EXPECT_EQ(Errno(MapDma(k_, container_.get(), DmaMap{vaddr, 0x300000, kPage, true, false})),
            EFAULT);
  ::munmap(ro, 2 * kPage);
}

TEST_F(IommuModel, MemlockLimitIsEnomem) {
  Buffer buf(4 * kPage);
  k_.SetMemlockLimit(3 * kPage);
  ASSERT_TRUE(Map(buf.vaddr(), 0x100000, 2 * kPage));
  EXPECT_EQ(Errno(Map(buf.vaddr() + 2 * kPage, 0x200000, 2 * kPage)), ENOMEM);
  EXPECT_TRUE(Map(buf.vaddr() + 2 * kPage, 0x200000, kPage));
  EXPECT_EQ(k_.LockedBytes(), 3 * kPage);
}

TEST_F(IommuModel, UpdateVaddrInvalidatesAndRestores) {
  Buffer a(kPage);
  Buffer b(kPage);
  ASSERT_TRUE(Map(a.vaddr(), 0x100000, kPage));
  vfio_iommu_type1_dma_unmap u{};
  u.argsz = sizeof u;
  u.flags = VFIO_DMA_UNMAP_FLAG_VADDR;
  u.iova = 0x100000;
  u.size = kPage;
  ASSERT_TRUE(k_.ioctl(container_.get(), VFIO_IOMMU_UNMAP_DMA, &u));
  EXPECT_EQ(u.size, kPage);
  vfio_iommu_type1_dma_map m{};
  m.argsz = sizeof m;
  m.flags = VFIO_DMA_MAP_FLAG_VADDR;
  m.vaddr = b.vaddr();
  m.iova = 0x100000;
  m.size = kPage;
  ASSERT_TRUE(k_.ioctl(container_.get(), VFIO_IOMMU_MAP_DMA, &m));
  EXPECT_EQ(k_.Entries(container_.get()).value().at(0).vaddr, b.vaddr());
  EXPECT_EQ(Errno(k_.ioctl(container_.get(), VFIO_IOMMU_MAP_DMA, &m)), EINVAL);  // not invalid
}

class SmallLimitModel : public ModelFixture {
 protected:
  SmallLimitModel() : ModelFixture(ModelKnobs{.dma_entry_limit = 4}) {}
};

TEST_F(SmallLimitModel, EntryLimitIsEnospcAndDmaAvailCountsDown) {
  Buffer buf(kPage);
  for (uint64_t i = 0; i < 4; ++i) {
    EXPECT_EQ(GetIommuInfo(k_, container_.get())->dma_avail, 4 - i);
    ASSERT_TRUE(Map(buf.vaddr(), 0x100000 + i * kPage, kPage));
  }
  EXPECT_EQ(GetIommuInfo(k_, container_.get())->dma_avail, 0u);
  EXPECT_EQ(Errno(Map(buf.vaddr(), 0x200000, kPage)), ENOSPC);
  ASSERT_TRUE(UnmapDma(k_, container_.get(), 0x100000, kPage));
  EXPECT_TRUE(Map(buf.vaddr(), 0x200000, kPage));
}

TEST_F(IommuModel, ConcurrentMapsAllLand) {
  constexpr int kThreads = 4;
  constexpr int kPerThread = 64;
  Buffer buf(kPage);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        uint64_t iova = (static_cast<uint64_t>(t) * kPerThread + i) * kPage;
        EXPECT_TRUE(Map(buf.vaddr(), iova, kPage));
      }
    });
  }
  for (auto& th : threads) {
    th.join();
  }
  EXPECT_EQ(MappingCount(), static_cast<size_t>(kThreads * kPerThread));
  EXPECT_EQ(GetIommuInfo(k_, container_.get())->dma_avail, 65535u - kThreads * kPerThread);
  EXPECT_EQ(k_.LockedBytes(), kThreads * kPerThread * kPage);
}

}  // namespace
}  // namespace vfiod::kernel::testing
