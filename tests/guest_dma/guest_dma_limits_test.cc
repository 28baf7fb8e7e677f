// Limits and failures on the real kernel: the DMA_AVAIL entry budget, 1 GiB
// pool exhaustion, rollback at every chunk, unmap verification. After each
// test VmLck, the fds and DMA_AVAIL are back where they started (TearDown).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstring>

#include "guest_dma_rig.h"

namespace vfiod::testing {
namespace {

using ::testing::HasSubstr;

dma::MapRequest Request(std::shared_ptr<const dma::Backing> backing,
                        std::optional<uint64_t> fixed_iova = std::nullopt) {
  return {.backing = std::move(backing),
          .offset = 0,
          .size = 0,
          .fixed_iova = fixed_iova,
          .max_iova = kEduDmaLimit - 1,
          .prot = {},
          .on_chunk = {},
          .segments = {}};
}

std::shared_ptr<const dma::Backing> Pages(uint64_t size) {
  auto backing = dma::CreatePagesBacking(size, false);
  EXPECT_TRUE(backing) << backing.error().message();
  return backing ? std::make_shared<const dma::Backing>(std::move(*backing)) : nullptr;
}

TEST_F(GuestDmaTest, KernelReportsTheVmFacts) {
  ASSERT_TRUE(start_.dma_avail.has_value());
  EXPECT_EQ(*start_.dma_avail, 65535u);
  EXPECT_EQ(space_->EntriesLeft(), start_.dma_avail);
  EXPECT_EQ(space_->allocator().page_sizes(), 0x40201000u);
}

TEST_F(GuestDmaTest, EntryBudgetExhaustionIsRefusedBeforeAnyIoctl) {
  ASSERT_TRUE(start_.dma_avail.has_value());
  // Keep all but 8 of the kernel's real entries back, 4 KiB per entry.
  NewSpace({.chunk_bytes = 4096, .reserve_entries = *start_.dma_avail - 8});
  const uint64_t vmlck = VmLckBytes();
  auto nine = space_->Map(Request(Pages(9 * 4096)));
  ASSERT_FALSE(nine);
  EXPECT_EQ(nine.error().code, ENOSPC);
  EXPECT_EQ(VmLckBytes(), vmlck);
  EXPECT_EQ(container_->IommuInfo()->dma_avail, start_.dma_avail);
  auto eight = space_->Map(Request(Pages(8 * 4096)));
  ASSERT_TRUE(eight) << eight.error().message();
  EXPECT_EQ(eight->chunks, 8u);
  // The kernel agrees: eight entries are in use.
  EXPECT_EQ(container_->IommuInfo()->dma_avail, *start_.dma_avail - 8);
  auto one = space_->Map(Request(Pages(4096)));
  ASSERT_FALSE(one);
  EXPECT_EQ(one.error().code, ENOSPC);
  auto unmapped = space_->Unmap(eight->id);
  ASSERT_TRUE(unmapped) << unmapped.error().message();
  EXPECT_EQ(unmapped->ioctls, 1u);
}

TEST_F(GuestDmaTest, SecondOneGigabytePageFailsClearlyAndLeaksNothing) {
  auto first = dma::CreateHugetlbBacking(vfiod::kPage1G, vfiod::kPage1G);
  ASSERT_TRUE(first) << first.error().message();
  const uint64_t vmlck = VmLckBytes();
  auto second = dma::CreateHugetlbBacking(vfiod::kPage1G, vfiod::kPage1G);
  ASSERT_FALSE(second);
  EXPECT_EQ(second.error().code, ENOMEM);
  EXPECT_THAT(second.error().detail, HasSubstr("no free 1 GiB hugepages: see "
                                               "/sys/kernel/mm/hugepages/hugepages-1048576kB"));
  EXPECT_EQ(VmLckBytes(), vmlck);
}

TEST_F(GuestDmaTest, FailureAtEveryChunkRollsBackOnTheRealKernel) {
  constexpr uint64_t kChunk = 64 << 10;
  constexpr uint64_t kChunks = 4;
  constexpr uint64_t kBase = 0x1000000;
  NewSpace({.chunk_bytes = kChunk, .reserve_entries = 0});
  auto backing = Pages(kChunks * kChunk);
  auto obstacle = Pages(4096);
  ASSERT_TRUE(backing && obstacle);
  for (uint64_t k = 1; k <= kChunks; ++k) {
    SCOPED_TRACE("failing chunk " + std::to_string(k));
    const GuestLeaks before = Leaks();
    // A mapping made behind the engine's back sits inside chunk k.
    const uint64_t in_the_way = kBase + (k - 1) * kChunk + 8192;
    ASSERT_TRUE(container_->Map({.vaddr = obstacle->vaddr(),
                                 .iova = in_the_way,
                                 .size = 4096,
                                 .read = true,
                                 .write = true}));
    auto report = space_->Map(Request(backing, kBase));
    ASSERT_FALSE(report);
    EXPECT_EQ(report.error().code, EEXIST);
    EXPECT_THAT(report.error().detail, HasSubstr("chunk " + std::to_string(k) + " of 4"));
    EXPECT_TRUE(space_->ShadowEntries().empty());
    EXPECT_EQ(space_->allocator().allocation_count(), 0u);
    ASSERT_EQ(container_->Unmap(in_the_way, 4096).value(), 4096u);
    EXPECT_EQ(Leaks(), before);
  }
  // With the way clear it maps, and edu proves the last chunk.
  auto report = space_->Map(Request(backing, kBase));
  ASSERT_TRUE(report) << report.error().message();
  auto* bytes = static_cast<std::byte*>(backing->data());
  const uint64_t offset = (kChunks - 1) * kChunk + 4096;
  std::span<std::byte> src(bytes + offset, 1024);
  std::span<std::byte> dst(bytes + offset + 2048, 1024);
  Randomize(src);
  ExpectRoundTrip(*edu_, src, kBase + offset, dst, kBase + offset + 2048, EduCompletion::kPoll);
}

TEST_F(GuestDmaTest, UnmapVerifiesTheBytesTheKernelReports) {
  NewSpace({.chunk_bytes = 8192, .reserve_entries = 0});
  auto report = space_->Map(Request(Pages(4 * 4096)));
  ASSERT_TRUE(report) << report.error().message();
  ASSERT_EQ(container_->Unmap(report->iova, 8192).value(), 8192u);  // behind its back
  auto unmapped = space_->Unmap(report->id);
  ASSERT_FALSE(unmapped);
  EXPECT_EQ(unmapped.error().code, EIO);
  EXPECT_THAT(unmapped.error().detail, HasSubstr("unmapped 8192 bytes"));
  EXPECT_TRUE(space_->ShadowEntries().empty());
}

TEST_F(GuestDmaTest, UnmapAllClearsTheContainerInOneCall) {
  for (int i = 0; i < 4; ++i) {
    ASSERT_TRUE(space_->Map(Request(Pages(64 << 10))));
  }
  EXPECT_EQ(container_->IommuInfo()->dma_avail, *start_.dma_avail - 4);
  auto all = space_->UnmapAll();
  ASSERT_TRUE(all) << all.error().message();
  EXPECT_EQ(all->ioctls, 1u);
  EXPECT_EQ(all->bytes, 4u * (64 << 10));
  EXPECT_EQ(container_->IommuInfo()->dma_avail, start_.dma_avail);
}

TEST_F(GuestDmaTest, AnUnmappedIovaStaysUnreachableAfterUnmap) {
  auto backing = Pages(64 << 10);
  auto report = space_->Map(Request(backing));
  ASSERT_TRUE(report) << report.error().message();
  const uint64_t iova = report->iova;
  ASSERT_TRUE(space_->Unmap(report->id));
  // The IOMMU now blocks the device: the DMA faults and memory is untouched.
  auto* bytes = static_cast<std::byte*>(backing->data());
  std::memset(bytes, 0x77, 4096);
  auto to_device = edu_->Dma(EduDirection::kToDevice, iova, 0, 1024);
  auto back = edu_->Dma(EduDirection::kFromDevice, iova, 0, 1024);
  (void)to_device;
  (void)back;
  for (int i = 0; i < 4096; ++i) {
    ASSERT_EQ(bytes[i], std::byte{0x77}) << "byte " << i << " changed after unmap";
  }
}

}  // namespace
}  // namespace vfiod::testing
