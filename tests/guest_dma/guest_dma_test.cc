// Every backing the engine serves, mapped by the engine on the real kernel and
// proven by edu DMA below its 28-bit limit; superpage placement checked
// against pagemap PFNs; peer to peer into the ivshmem BAR.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstring>

#include "dma/backing_bar.h"
#include "guest_dma_rig.h"

namespace vfiod::testing {
namespace {

using vfiod::kPage1G;
using vfiod::kPage2M;
using vfiod::kPage4K;

std::shared_ptr<const dma::Backing> Share(Result<dma::Backing> backing) {
  EXPECT_TRUE(backing) << backing.error().message();
  return backing ? std::make_shared<const dma::Backing>(std::move(*backing)) : nullptr;
}

dma::MapRequest Whole(std::shared_ptr<const dma::Backing> backing, uint64_t max_iova) {
  return {.backing = std::move(backing),
          .offset = 0,
          .size = 0,
          .fixed_iova = std::nullopt,
          .max_iova = max_iova,
          .prot = {},
          .on_chunk = {},
          .segments = {}};
}

TEST_F(GuestDmaTest, FourKilobytePagesCarryEduDma) {
  auto backing = Share(dma::CreatePagesBacking(4 << 20, /*shareable=*/true));
  ASSERT_NE(backing, nullptr);
  MapAndProve(backing);
}

TEST_F(GuestDmaTest, ChunkedFourKilobyteMapCarriesEduDmaInEveryChunk) {
  NewSpace({.chunk_bytes = 64 << 10, .reserve_entries = 0});
  auto backing = Share(dma::CreatePagesBacking(1 << 20, false));
  ASSERT_NE(backing, nullptr);
  auto report = space_->Map(Whole(backing, kEduDmaLimit - 1));
  ASSERT_TRUE(report) << report.error().message();
  EXPECT_EQ(report->chunks, 16u);
  auto* bytes = static_cast<std::byte*>(backing->data());
  for (uint64_t chunk = 0; chunk < 16; ++chunk) {
    const uint64_t offset = chunk * (64 << 10) + 512;
    std::span<std::byte> src(bytes + offset, 1024);
    std::span<std::byte> dst(bytes + offset + 2048, 1024);
    Randomize(src);
    ExpectRoundTrip(*edu_, src, report->iova + offset, dst, report->iova + offset + 2048,
                    EduCompletion::kPoll);
  }
}

TEST_F(GuestDmaTest, TransparentHugePagesCarryEduDma) {
  auto backing = Share(dma::CreateThpBacking(8 << 20, /*shareable=*/false));
  ASSERT_NE(backing, nullptr);
  auto report = space_->Map(Whole(backing, kEduDmaLimit - 1));
  ASSERT_TRUE(report) << report.error().message();
  auto contiguity = space_->Contiguity(report->id);
  ASSERT_TRUE(contiguity) << contiguity.error().message();
  std::printf("THP: %llu of 4 2 MiB folios, congruence %llu\n",
              static_cast<unsigned long long>(contiguity->folios_2m),
              static_cast<unsigned long long>(report->congruence.modulus));
  // The view is 2 MiB aligned: placed for PMD folios whether or not the guest had THP.
  EXPECT_EQ(report->congruence.modulus, kPage2M);
  if (contiguity->folios_2m > 0) {  // the guest had THP to give
    ExpectSuperpageCongruent(*report, kPage2M);
  }
  ASSERT_TRUE(space_->Unmap(report->id));
  MapAndProve(backing);
}

TEST_F(GuestDmaTest, Hugetlb2MCarriesEduDmaAndIsSuperpageCongruent) {
  auto backing = Share(dma::CreateHugetlbBacking(8 * kPage2M, kPage2M));
  ASSERT_NE(backing, nullptr);
  auto report = space_->Map(Whole(backing, kEduDmaLimit - 1));
  ASSERT_TRUE(report) << report.error().message();
  EXPECT_EQ(report->congruence.modulus, kPage2M);
  EXPECT_EQ(space_->Contiguity(report->id)->folios_2m, 8u);
  ExpectSuperpageCongruent(*report, kPage2M);
  ASSERT_TRUE(space_->Unmap(report->id));
  MapAndProve(backing);
}

TEST_F(GuestDmaTest, Hugetlb1GCarriesEduDmaBelowTheLimit) {
  auto backing = Share(dma::CreateHugetlbBacking(kPage1G, kPage1G));
  ASSERT_NE(backing, nullptr);
  // edu reaches only 256 MiB of IOVA: map the first 16 MiB of the page.
  MapAndProve(backing, 16 << 20);
}

TEST_F(GuestDmaTest, Hugetlb1GMappedWholeIsGigabyteCongruent) {
  auto backing = Share(dma::CreateHugetlbBacking(kPage1G, kPage1G));
  ASSERT_NE(backing, nullptr);
  auto report = space_->Map(Whole(backing, UINT64_MAX));
  ASSERT_TRUE(report) << report.error().message();
  EXPECT_EQ(report->congruence.modulus, kPage1G);
  EXPECT_EQ(space_->Contiguity(report->id)->folios_1g, 1u);
  EXPECT_EQ(report->chunks, 1u);
  ExpectSuperpageCongruent(*report, kPage1G);
  EXPECT_GE(VmLckBytes(), start_.vmlck + kPage1G);
}

TEST_F(GuestDmaTest, ClientMemfdCarriesEduDmaSeenThroughTheClientsOwnMapping) {
  constexpr uint64_t kSize = 2 << 20;
  UniqueFd client(::memfd_create("client", MFD_CLOEXEC | MFD_ALLOW_SEALING));
  ASSERT_TRUE(client.valid());
  ASSERT_EQ(::ftruncate(client.get(), kSize), 0);
  void* view = ::mmap(nullptr, kSize, PROT_READ | PROT_WRITE, MAP_SHARED, client.get(), 0);
  ASSERT_NE(view, MAP_FAILED);
  dma::MappedMemory client_view(view, kSize);
  auto backing = Share(dma::AdoptClientFd(UniqueFd(::dup(client.get())), 0, kSize));
  ASSERT_NE(backing, nullptr);
  auto report = space_->Map(Whole(backing, kEduDmaLimit - 1));
  ASSERT_TRUE(report) << report.error().message();
  // The client writes through its own mapping, the device copies, the client
  // reads the copy through its own mapping: vfiod's view is only the conduit.
  auto* mine = static_cast<std::byte*>(view);
  std::span<std::byte> src(mine + 4096, 2048);
  std::span<std::byte> dst(mine + kSize - 4096, 2048);
  Randomize(src);
  ExpectRoundTrip(*edu_, src, report->iova + 4096, dst, report->iova + kSize - 4096,
                  EduCompletion::kPoll);
}

TEST_F(GuestDmaTest, IvshmemBarReceivesEduDmaPeerToPeer) {
  auto ivshmem = OpenDevice(container_, ivshmem_bdf_);
  ASSERT_NE(ivshmem, nullptr);
  auto bar = Share(dma::CreateBarBacking(ivshmem, 2));
  ASSERT_NE(bar, nullptr);
  EXPECT_TRUE(bar->mmio());
  EXPECT_EQ(bar->vaddr() % bar->alignment(), 0u);
  auto ram = Share(dma::CreatePagesBacking(64 << 10, false));
  ASSERT_NE(ram, nullptr);
  const uint64_t vmlck = VmLckBytes();
  auto bar_map = space_->Map(Whole(bar, kEduDmaLimit - 1));
  ASSERT_TRUE(bar_map) << bar_map.error().message();
  EXPECT_FALSE(bar_map->pinned);
  EXPECT_EQ(VmLckBytes(), vmlck) << "MMIO must not be charged as locked memory";
  EXPECT_EQ(bar_map->iova % bar_map->congruence.modulus, 0u);
  auto ram_map = space_->Map(Whole(ram, kEduDmaLimit - 1));
  ASSERT_TRUE(ram_map) << ram_map.error().message();
  auto* ram_bytes = static_cast<std::byte*>(ram->data());
  auto* bar_bytes = static_cast<std::byte*>(bar->data());
  const uint64_t bar_offset = (32 << 20) + 4096;
  std::span<std::byte> src(ram_bytes + 128, 2048);
  std::span<std::byte> dst(bar_bytes + bar_offset, 2048);
  Randomize(src);
  ExpectRoundTrip(*edu_, src, ram_map->iova + 128, dst, bar_map->iova + bar_offset,
                  EduCompletion::kPoll);
}

TEST_F(GuestDmaTest, EveryPlacementHonoursTheEduLimit) {
  std::vector<std::shared_ptr<const dma::Backing>> backings;
  for (int i = 0; i < 6; ++i) {
    backings.push_back(Share(dma::CreateHugetlbBacking(4 * kPage2M, kPage2M)));
    ASSERT_NE(backings.back(), nullptr);
    auto report = space_->Map(Whole(backings.back(), kEduDmaLimit - 1));
    ASSERT_TRUE(report) << report.error().message();
    EXPECT_LE(report->iova + report->size, kEduDmaLimit);
    EXPECT_EQ(report->iova % kPage2M, 0u);
  }
  // A request that cannot fit below the limit is refused before any ioctl.
  auto big = Share(dma::CreatePagesBacking(4096, false));
  ASSERT_NE(big, nullptr);
  auto clash = space_->Map({.backing = big,
                            .offset = 0,
                            .size = 0,
                            .fixed_iova = kEduDmaLimit,
                            .max_iova = kEduDmaLimit - 1,
                            .prot = {},
                            .on_chunk = {},
                            .segments = {}});
  ASSERT_FALSE(clash);
  EXPECT_EQ(clash.error().code, EINVAL);
  EXPECT_EQ(space_->Mappings().size(), 6u);
}

}  // namespace
}  // namespace vfiod::testing
