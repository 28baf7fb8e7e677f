// The vfio layer on the real kernel, in the QEMU guest (run through
// tests/vm/vm_run.sh): lifecycle, the non-viable group, and DMA proven byte
// for byte by the edu device through the IOMMU, from every kind of memory,
// to an unmapped IOVA, and peer to peer into the ivshmem BAR.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstring>
#include <fstream>
#include <sstream>
#include <vector>

#include "memory.h"
#include "rig.h"
#include "support/scoped_entry.h"
#include "vfio/irq.h"
#include "vfio/region.h"

namespace vfiod::testing {
namespace {

using ::testing::HasSubstr;
constexpr uint64_t k4K = 4096;
constexpr uint64_t k2M = uint64_t{2} << 20;
constexpr uint64_t k1G = uint64_t{1} << 30;

TEST_F(GuestTest, ContainerGroupDeviceLifecycle) {
  auto container = vfio::Container::Open(*kernel_);
  ASSERT_TRUE(container.has_value()) << container.error().message();
  auto c = *container;
  EXPECT_TRUE(c->features().type1v2);
  EXPECT_TRUE(c->features().unmap_all);
  EXPECT_FALSE(c->features().update_vaddr);  // reported only once an IOMMU is set
  {
    auto dev = OpenDevice(c, edu_bdf_);
    ASSERT_NE(dev, nullptr);
    EXPECT_TRUE(c->iommu_set());
    EXPECT_TRUE(c->features().update_vaddr);
    auto info = c->IommuInfo();
    ASSERT_TRUE(info.has_value()) << info.error().message();
    EXPECT_NE(info->iova_pgsizes & k4K, 0u);
    EXPECT_THAT(info->iova_ranges, ::testing::Contains(kernel::IovaRange{0, 0xfedfffff}));
    EXPECT_TRUE(info->dma_avail.has_value());
    auto status = dev->group()->Status();
    ASSERT_TRUE(status.has_value());
    EXPECT_TRUE(status->viable);
    EXPECT_TRUE(status->container_set);
    EXPECT_TRUE(dev->info().is_pci());
    EXPECT_GE(dev->info().num_regions, kernel::kPciNumRegions);
    auto bar0 = dev->RegionInfo(kernel::kPciBar0RegionIndex);
    ASSERT_TRUE(bar0.has_value());
    EXPECT_EQ(bar0->size, uint64_t{1} << 20);
    EXPECT_TRUE(bar0->mmappable());
    EXPECT_EQ(dev->ReadConfig16(0).value_or(0), kEduVendor);
    EXPECT_EQ(dev->ReadConfig16(2).value_or(0), kEduDeviceId);
    auto msi = dev->IrqInfo(kernel::kPciMsiIrqIndex);
    ASSERT_TRUE(msi.has_value());
    EXPECT_EQ(msi->count, 1u);
    EXPECT_TRUE(msi->eventfd());
    auto edu = EduDevice::Open(dev);
    ASSERT_TRUE(edu.has_value()) << edu.error().message();
    EXPECT_EQ(edu->Liveness(0xcafe0000), ~0xcafe0000u);
    EXPECT_NE(dev->ReadConfig16(vfio::kPciCommandOffset).value_or(0) & vfio::kPciCommandBusMaster,
              0);
  }
  // Everything was released: the group is free to be opened and attached again.
  EXPECT_FALSE(c->iommu_set());
  auto again = OpenDevice(c, edu_bdf_);
  EXPECT_NE(again, nullptr);
}

TEST_F(GuestTest, NonViableGroupIsRefusedWithTheBlockingMembers) {
  int number = GroupOf(nonviable_bdf_);
  std::vector<std::string> blockers;
  for (const vfio::GroupMember& m : sysfs_.GroupMembers(number)) {
    if (!m.allows_vfio()) {
      blockers.push_back(m.name + " (" + m.driver + ")");
    }
  }
  ASSERT_FALSE(blockers.empty()) << "the harness should leave other ICH9 functions bound";
  auto group = vfio::Group::Open(*kernel_, number, &sysfs_);
  ASSERT_FALSE(group.has_value());
  EXPECT_EQ(group.error().code, EPERM);
  for (const std::string& b : blockers) {
    EXPECT_THAT(group.error().detail, HasSubstr(b));
  }
  EXPECT_THAT(group.error().detail, ::testing::Not(HasSubstr(nonviable_bdf_)));
}

// VFIO masks INTx each time it fires (AUTOMASKED): a second interrupt is not
// signalled until the driver unmasks, and one pending at the unmask is.
TEST_F(GuestTest, IntxIsSignalledOncePerUnmask) {
  ASSERT_TRUE(OpenEdu());
  auto info = edu_->device()->IrqInfo(kernel::kPciIntxIrqIndex);
  ASSERT_TRUE(info.has_value()) << info.error().message();
  ASSERT_EQ(info->count, 1u) << "edu declares interrupt pin A";
  EXPECT_TRUE(info->maskable());
  auto intx = vfio::IrqSet::Enable(edu_->device(), kernel::kPciIntxIrqIndex, 1);
  ASSERT_TRUE(intx.has_value()) << intx.error().message();
  const auto wait = std::chrono::seconds(5);
  const auto quiet = std::chrono::milliseconds(300);
  edu_->RaiseIrq(1);
  auto fired = intx->Wait(0, wait);
  ASSERT_TRUE(fired.has_value()) << fired.error().message();
  EXPECT_EQ(*fired, 1u);
  edu_->AckIrqs();
  edu_->RaiseIrq(2);  // masked since the first interrupt
  EXPECT_EQ(intx->Wait(0, quiet).error().code, ETIMEDOUT);
  ASSERT_TRUE(intx->Unmask(0).has_value());  // still asserted: signalled now
  fired = intx->Wait(0, wait);
  ASSERT_TRUE(fired.has_value()) << fired.error().message();
  EXPECT_EQ(*fired, 1u);
  edu_->AckIrqs();
  ASSERT_TRUE(intx->Unmask(0).has_value());  // nothing pending: stays quiet
  EXPECT_EQ(intx->Wait(0, quiet).error().code, ETIMEDOUT);
  edu_->RaiseIrq(4);
  fired = intx->Wait(0, wait);
  ASSERT_TRUE(fired.has_value()) << fired.error().message();
  edu_->AckIrqs();
  EXPECT_EQ(intx->Unmask(1).error().code, EINVAL);
}

struct DmaCase {
  MemoryKind kind;
  uint64_t size;  ///< buffer size
  uint64_t iova;  ///< where the buffer is mapped (aligned to its page size)
};

class GuestDmaTest : public GuestTest, public ::testing::WithParamInterface<DmaCase> {};

// Random transfers (both directions, poll and MSI) between random spots of the
// buffer, including one that straddles a 4K page boundary and one at the far
// end of the part of the buffer edu can reach.
TEST_P(GuestDmaTest, RoundTripsThroughTheIommu) {
  const DmaCase& p = GetParam();
  auto mem = TestMemory::Allocate(p.kind, p.size);
  ASSERT_TRUE(mem.has_value()) << mem.error().message();
  if (p.kind == MemoryKind::kThp) {
    std::ifstream in("/sys/kernel/mm/transparent_hugepage/enabled");
    std::stringstream mode;
    mode << in.rdbuf();
    if (mode.str().find("[never]") == std::string::npos) {
      EXPECT_GT(TestMemory::AnonHugePagesKb(), 0u) << "madvise'd memory got no huge page";
    }
  }
  ASSERT_TRUE(OpenEdu());
  auto mapping = test::ScopedEntry::Map(
      container_,
      {.vaddr = mem->vaddr(), .iova = p.iova, .size = p.size, .read = true, .write = true});
  ASSERT_TRUE(mapping.has_value()) << mapping.error().message();
  ASSERT_TRUE(container_->iommu_set());
  ASSERT_TRUE(edu_->EnableMsi().has_value());

  // The window edu can address: the buffer up to the 28-bit IOVA limit.
  uint64_t reach = std::min<uint64_t>(p.size, kEduDmaLimit - p.iova);
  std::uniform_int_distribution<uint32_t> len_dist(1, kEduMaxTransfer);
  std::uniform_int_distribution<uint64_t> src_dist(1, reach / 2 - k4K);
  std::uniform_int_distribution<uint64_t> dst_dist(reach / 2, reach - 2 * k4K);
  struct Transfer {
    uint64_t src;
    uint64_t dst;
    uint32_t len;
    EduCompletion how;
  };
  std::vector<Transfer> transfers = {
      {k4K - 100, reach - k4K - 1500, 1000, EduCompletion::kPoll},  // crosses a page
      {src_dist(rng_), reach - kEduMaxTransfer - 1, kEduMaxTransfer, EduCompletion::kMsi},
      {src_dist(rng_), dst_dist(rng_), len_dist(rng_), EduCompletion::kPoll},
      {src_dist(rng_), dst_dist(rng_), len_dist(rng_), EduCompletion::kMsi},
  };
  for (const Transfer& t : transfers) {
    SCOPED_TRACE(::testing::Message() << "src +" << t.src << " dst +" << t.dst << " len " << t.len
                                      << (t.how == EduCompletion::kMsi ? " msi" : " poll"));
    std::span<std::byte> src(mem->data() + t.src, t.len);
    std::span<std::byte> dst(mem->data() + t.dst, t.len);
    Randomize(src);
    ExpectRoundTrip(*edu_, src, p.iova + t.src, dst, p.iova + t.dst, t.how);
  }
}

INSTANTIATE_TEST_SUITE_P(Memory, GuestDmaTest,
                         ::testing::Values(DmaCase{MemoryKind::kAnon4K, 64 * k4K, 0x100000},
                                           DmaCase{MemoryKind::kHugetlb2M, 2 * k2M, 0x400000},
                                           DmaCase{MemoryKind::kHugetlb1G, k1G, 0},
                                           DmaCase{MemoryKind::kThp, 2 * k2M, 0x800000}),
                         [](const ::testing::TestParamInfo<DmaCase>& param_info) {
                           return ToString(param_info.param.kind);
                         });

// A mapping removed from the IOMMU must really stop the device: edu's DMA to
// the old IOVA faults in the IOMMU (DMAR fault in dmesg), the memory that was
// mapped there stays as it was, and the device goes on working.
TEST_F(GuestTest, DmaToAnUnmappedIovaDoesNotReachMemory) {
  auto mem = TestMemory::Allocate(MemoryKind::kAnon4K, 16 * k4K);
  ASSERT_TRUE(mem.has_value()) << mem.error().message();
  ASSERT_TRUE(OpenEdu());
  constexpr uint64_t kIova = 0x300000;
  std::span<std::byte> all(mem->data(), mem->size());
  std::span<std::byte> pattern = all.subspan(0, 2048);
  Randomize(all);
  {
    auto m = test::ScopedEntry::Map(
        container_,
        {.vaddr = mem->vaddr(), .iova = kIova, .size = mem->size(), .read = true, .write = true});
    ASSERT_TRUE(m.has_value()) << m.error().message();
    // Load the device buffer with something that differs from the target bytes.
    auto load = edu_->Dma(EduDirection::kToDevice, kIova, 0, 2048);
    ASSERT_TRUE(load.has_value()) << load.error().message();
    ASSERT_TRUE(m->Unmap().has_value());
  }
  std::vector<std::byte> before(all.begin(), all.end());
  uint64_t target = 8 * k4K;
  ASSERT_NE(std::memcmp(mem->data() + target, pattern.data(), 2048), 0);
  auto blocked = edu_->Dma(EduDirection::kFromDevice, kIova + target, 0, 2048, EduCompletion::kPoll,
                           std::chrono::seconds(5));
  if (!blocked) {  // "completes" or times out; either way nothing may arrive
    EXPECT_EQ(blocked.error().code, ETIMEDOUT) << blocked.error().message();
  }
  EXPECT_EQ(std::memcmp(before.data(), mem->data(), mem->size()), 0)
      << "a DMA to an unmapped IOVA changed process memory";

  // The device still works: map again and do a real round trip.
  auto m = test::ScopedEntry::Map(
      container_,
      {.vaddr = mem->vaddr(), .iova = kIova, .size = mem->size(), .read = true, .write = true});
  ASSERT_TRUE(m.has_value()) << m.error().message();
  std::span<std::byte> src = all.subspan(k4K, 1024);
  Randomize(src);
  ExpectRoundTrip(*edu_, src, kIova + k4K, all.subspan(4 * k4K, 1024), kIova + 4 * k4K,
                  EduCompletion::kPoll);
}

// Peer to peer: ivshmem's BAR2 (RAM), mmap'd through VFIO at its natural
// alignment and mapped into the same container, is written by edu's DMA and
// read back through the mmap, and read by edu after the CPU wrote it.
TEST_F(GuestTest, PeerToPeerIntoTheIvshmemBar) {
  auto mem = TestMemory::Allocate(MemoryKind::kAnon4K, 16 * k4K);
  ASSERT_TRUE(mem.has_value()) << mem.error().message();
  ASSERT_TRUE(OpenEdu());
  auto ivshmem = OpenDevice(container_, ivshmem_bdf_);
  ASSERT_NE(ivshmem, nullptr);
  auto bar2 = vfio::RegionMapping::Map(ivshmem, 2);
  ASSERT_TRUE(bar2.has_value()) << bar2.error().message();
  EXPECT_EQ(reinterpret_cast<uintptr_t>(bar2->data()) % vfio::NaturalAlignment(bar2->size()), 0u);
  constexpr uint64_t kRamIova = 0x100000;
  constexpr uint64_t kBarIova = 0x8000000;
  auto ram_map = test::ScopedEntry::Map(
      container_,
      {.vaddr = mem->vaddr(), .iova = kRamIova, .size = mem->size(), .read = true, .write = true});
  ASSERT_TRUE(ram_map.has_value()) << ram_map.error().message();
  uint64_t bar_len = std::min<uint64_t>(bar2->size(), kEduDmaLimit - kBarIova);
  auto bar_map =
      test::ScopedEntry::Map(container_, {.vaddr = reinterpret_cast<uint64_t>(bar2->data()),
                                          .iova = kBarIova,
                                          .size = bar_len,
                                          .read = true,
                                          .write = true});
  ASSERT_TRUE(bar_map.has_value()) << bar_map.error().message();

  std::span<std::byte> ram(mem->data(), mem->size());
  std::span<std::byte> bar(bar2->data(), bar2->size());
  uint64_t bar_off = 5 * k2M + 3 * k4K + 17;
  // RAM -> edu -> BAR, read back through the BAR mmap.
  Randomize(ram.subspan(k4K, 3000));
  ExpectRoundTrip(*edu_, ram.subspan(k4K, 3000), kRamIova + k4K, bar.subspan(bar_off, 3000),
                  kBarIova + bar_off, EduCompletion::kPoll);
  // BAR (written by the CPU) -> edu -> RAM.
  Randomize(bar.subspan(bar_off + 8192, 2000));
  ASSERT_TRUE(edu_->EnableMsi().has_value());
  ExpectRoundTrip(*edu_, bar.subspan(bar_off + 8192, 2000), kBarIova + bar_off + 8192,
                  ram.subspan(8 * k4K, 2000), kRamIova + 8 * k4K, EduCompletion::kMsi);
}

}  // namespace
}  // namespace vfiod::testing
