// The VFIO_UPDATE_VADDR protocol a live restart rests on: UNMAP_DMA with
// VFIO_DMA_UNMAP_FLAG_VADDR takes the process address from the entries of a
// range (they stay mapped and pinned), and MAP_DMA with
// VFIO_DMA_MAP_FLAG_VADDR gives one such entry a new address. The raw cases
// bypass vfio_api's checks so that the kernel's own answer is tested.
#include <linux/vfio.h>

#include "conformance_fixture.h"

namespace vfiod::conformance {
namespace {

constexpr uint64_t kIova = 0x100000;

class Vaddr : public Attached {
 protected:
  Result<uint64_t> Invalidate(uint64_t iova, uint64_t size) {
    return kernel::InvalidateVaddr(k_, container_.get(), iova, size);
  }
  Result<void> Update(uint64_t vaddr, uint64_t iova, uint64_t size) {
    return kernel::UpdateVaddr(k_, container_.get(), vaddr, iova, size);
  }
  int RawMap(uint32_t flags, uint64_t vaddr, uint64_t iova, uint64_t size) {
    vfio_iommu_type1_dma_map m{};
    m.argsz = sizeof m;
    m.flags = flags;
    m.vaddr = vaddr;
    m.iova = iova;
    m.size = size;
    return Errno(k_.ioctl(container_.get(), VFIO_IOMMU_MAP_DMA, &m));
  }
};

TEST_F(Vaddr, TheExtensionIsReportedOnceTheIommuIsSet) {
  EXPECT_EQ(
      kernel::CheckExtension(k_, container_.get(), kernel::Extension::kUpdateVaddr).value_or(false),
      true);
}

// Every entry inside the range is invalidated and its bytes are reported;
// the entries stay (the entry count does not move) and each takes a new
// address of its own.
TEST_F(Vaddr, InvalidateCoversEveryEntryOfTheRange) {
  Buffer old_buf(3 * kPage);
  Buffer new_buf(3 * kPage);
  ASSERT_TRUE(old_buf.ok() && new_buf.ok());
  ASSERT_TRUE(Map(old_buf.vaddr(), kIova, kPage));
  ASSERT_TRUE(Map(old_buf.vaddr() + kPage, kIova + 4 * kPage, 2 * kPage));
  uint32_t avail = DmaAvail();
  auto invalidated = Invalidate(kIova, 0x10000);
  ASSERT_TRUE(invalidated) << invalidated.error().message();
  EXPECT_EQ(*invalidated, 3 * kPage);
  EXPECT_EQ(DmaAvail(), avail);
  EXPECT_TRUE(Update(new_buf.vaddr(), kIova, kPage));
  EXPECT_TRUE(Update(new_buf.vaddr() + kPage, kIova + 4 * kPage, 2 * kPage));
  EXPECT_EQ(Unmap(kIova, 0x10000).value_or(0), 3 * kPage);
  EXPECT_EQ(DmaAvail(), avail + 2);
}

TEST_F(Vaddr, InvalidateOfNothingIsZero) {
  auto r = Invalidate(0x300000, 16 * kPage);
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(*r, 0u);
}

TEST_F(Vaddr, InvalidateThatWouldSplitIsEinval) {
  Buffer buf(4 * kPage);
  ASSERT_TRUE(buf.ok());
  ASSERT_TRUE(Map(buf.vaddr(), kIova, 4 * kPage));
  EXPECT_EQ(Errno(Invalidate(kIova, kPage)), EINVAL);
  EXPECT_EQ(Errno(Invalidate(kIova + kPage, 4 * kPage)), EINVAL);
  EXPECT_EQ(Errno(Update(buf.vaddr(), kIova, 4 * kPage)), EINVAL);  // so still valid
}

// All or nothing: one entry invalidated already fails the whole range, and
// the entries before it are restored.
TEST_F(Vaddr, InvalidateTwiceIsEinvalAndChangesNothing) {
  Buffer buf(2 * kPage);
  ASSERT_TRUE(buf.ok());
  ASSERT_TRUE(Map(buf.vaddr(), kIova, kPage));
  ASSERT_TRUE(Map(buf.vaddr() + kPage, kIova + kPage, kPage));
  ASSERT_EQ(Invalidate(kIova + kPage, kPage).value_or(0), kPage);
  EXPECT_EQ(Errno(Invalidate(kIova, 2 * kPage)), EINVAL);
  EXPECT_EQ(Errno(Update(buf.vaddr(), kIova, kPage)), EINVAL);  // the first is valid still
  EXPECT_TRUE(Update(buf.vaddr() + kPage, kIova + kPage, kPage));
  EXPECT_EQ(Invalidate(kIova, 2 * kPage).value_or(0), 2 * kPage);  // now both at once
}

// FLAG_VADDR must name one invalidated entry by its exact IOVA and size.
TEST_F(Vaddr, UpdateMustMatchOneInvalidatedEntryExactly) {
  Buffer buf(4 * kPage);
  ASSERT_TRUE(buf.ok());
  ASSERT_TRUE(Map(buf.vaddr(), kIova, 4 * kPage));
  EXPECT_EQ(Errno(Update(buf.vaddr(), kIova, 4 * kPage)), EINVAL);  // not invalidated
  ASSERT_EQ(Invalidate(kIova, 4 * kPage).value_or(0), 4 * kPage);
  EXPECT_EQ(Errno(Update(buf.vaddr(), 0x300000, kPage)), ENOENT);       // no entry there
  EXPECT_EQ(Errno(Update(buf.vaddr(), kIova, 2 * kPage)), EINVAL);      // head only
  EXPECT_EQ(Errno(Update(buf.vaddr(), kIova + kPage, kPage)), EINVAL);  // inside
  EXPECT_EQ(Errno(Update(buf.vaddr(), kIova, 8 * kPage)), EINVAL);      // wider
  EXPECT_EQ(Errno(Update(buf.vaddr(), kIova - kPage, 5 * kPage)), EINVAL);
  EXPECT_TRUE(Update(buf.vaddr(), kIova, 4 * kPage));
  EXPECT_EQ(Errno(Update(buf.vaddr(), kIova, 4 * kPage)), EINVAL);  // valid again
}

// Two entries under one wide FLAG_VADDR map: the lowest is found, and it is
// not the whole range, so EINVAL (the map never touches several entries).
TEST_F(Vaddr, UpdateSpanningTwoEntriesIsEinval) {
  Buffer buf(2 * kPage);
  ASSERT_TRUE(buf.ok());
  ASSERT_TRUE(Map(buf.vaddr(), kIova, kPage));
  ASSERT_TRUE(Map(buf.vaddr() + kPage, kIova + kPage, kPage));
  ASSERT_EQ(Invalidate(kIova, 2 * kPage).value_or(0), 2 * kPage);
  EXPECT_EQ(Errno(Update(buf.vaddr(), kIova, 2 * kPage)), EINVAL);
  EXPECT_TRUE(Update(buf.vaddr(), kIova, kPage));
  EXPECT_TRUE(Update(buf.vaddr() + kPage, kIova + kPage, kPage));
}

// An entry whose address is invalid can still be unmapped (a successor that
// finds an entry it has no memory for releases it).
TEST_F(Vaddr, InvalidatedEntryUnmapsAndFreesItsSlot) {
  Buffer buf(2 * kPage);
  ASSERT_TRUE(buf.ok());
  uint32_t avail = DmaAvail();
  ASSERT_TRUE(Map(buf.vaddr(), kIova, 2 * kPage));
  ASSERT_EQ(Invalidate(kIova, 2 * kPage).value_or(0), 2 * kPage);
  EXPECT_EQ(Unmap(kIova, 2 * kPage).value_or(0), 2 * kPage);
  EXPECT_EQ(DmaAvail(), avail);
  EXPECT_EQ(Errno(Update(buf.vaddr(), kIova, 2 * kPage)), ENOENT);
}

// A new entry may overlap nothing, invalidated entries included.
TEST_F(Vaddr, InvalidatedEntryStillOccupiesItsIovas) {
  Buffer buf(2 * kPage);
  ASSERT_TRUE(buf.ok());
  ASSERT_TRUE(Map(buf.vaddr(), kIova, 2 * kPage));
  ASSERT_EQ(Invalidate(kIova, 2 * kPage).value_or(0), 2 * kPage);
  EXPECT_EQ(Errno(Map(buf.vaddr(), kIova + kPage, kPage)), EEXIST);
  EXPECT_EQ(Unmap(kIova, 2 * kPage).value_or(0), 2 * kPage);
}

// FLAG_VADDR goes without READ/WRITE: both together are EINVAL, as is a map
// with neither.
TEST_F(Vaddr, UpdateTakesNoAccessFlags) {
  Buffer buf(kPage);
  ASSERT_TRUE(buf.ok());
  ASSERT_TRUE(Map(buf.vaddr(), kIova, kPage));
  ASSERT_EQ(Invalidate(kIova, kPage).value_or(0), kPage);
  EXPECT_EQ(RawMap(VFIO_DMA_MAP_FLAG_VADDR | VFIO_DMA_MAP_FLAG_READ, buf.vaddr(), kIova, kPage),
            EINVAL);
  EXPECT_EQ(RawMap(0, buf.vaddr(), kIova, kPage), EINVAL);
  EXPECT_EQ(RawMap(VFIO_DMA_MAP_FLAG_VADDR, buf.vaddr(), kIova, kPage), 0);
}

// FLAG_VADDR with FLAG_ALL invalidates every entry of the container.
TEST_F(Vaddr, InvalidateAllCoversTheContainer) {
  Buffer buf(kPage);
  ASSERT_TRUE(buf.ok());
  ASSERT_TRUE(Map(buf.vaddr(), kIova, kPage));
  ASSERT_TRUE(Map(buf.vaddr(), 0x10000000, kPage));
  vfio_iommu_type1_dma_unmap u{};
  u.argsz = sizeof u;
  u.flags = VFIO_DMA_UNMAP_FLAG_VADDR | VFIO_DMA_UNMAP_FLAG_ALL;
  ASSERT_EQ(Errno(k_.ioctl(container_.get(), VFIO_IOMMU_UNMAP_DMA, &u)), 0);
  EXPECT_EQ(u.size, 2 * kPage);
  EXPECT_TRUE(Update(buf.vaddr(), kIova, kPage));
  EXPECT_TRUE(Update(buf.vaddr(), 0x10000000, kPage));
}

}  // namespace
}  // namespace vfiod::conformance
