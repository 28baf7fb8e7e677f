#include "guest_dma_rig.h"

#include <fcntl.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <span>
#include <string>

#include "support/open_fds.h"

namespace vfiod::testing {
namespace {

constexpr uint64_t kPage = 4096;
constexpr uint64_t kPfnMask = (uint64_t{1} << 55) - 1;
constexpr uint64_t kPresent = uint64_t{1} << 63;

std::vector<uint64_t> ReadPagemap(uint64_t vaddr, uint64_t pages) {
  std::vector<uint64_t> entries(pages);
  const int fd = ::open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
  EXPECT_GE(fd, 0);
  const auto bytes = static_cast<ssize_t>(pages * sizeof(uint64_t));
  EXPECT_EQ(::pread(fd, entries.data(), pages * sizeof(uint64_t),
                    static_cast<off_t>(vaddr / kPage * sizeof(uint64_t))),
            bytes);
  ::close(fd);
  return entries;
}

}  // namespace

uint64_t PfnOf(uint64_t vaddr) {
  const uint64_t entry = ReadPagemap(vaddr, 1).front();
  return (entry & kPresent) != 0 ? entry & kPfnMask : 0;
}

uint64_t CountRuns(uint64_t vaddr, uint64_t len) {
  const std::vector<uint64_t> entries = ReadPagemap(vaddr, len / kPage);
  uint64_t runs = 0;
  uint64_t previous = 0;
  for (uint64_t entry : entries) {
    const uint64_t pfn = (entry & kPresent) != 0 ? entry & kPfnMask : 0;
    if (pfn == 0 || previous == 0 || pfn != previous + 1) {
      ++runs;
    }
    previous = pfn;
  }
  return runs;
}

uint64_t VmLckBytes() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.starts_with("VmLck:")) {
      return std::stoull(line.substr(6)) << 10;
    }
  }
  ADD_FAILURE() << "no VmLck in /proc/self/status";
  return 0;
}

void GuestDmaTest::SetUp() {
  GuestTest::SetUp();
  if (::testing::Test::HasFatalFailure()) {
    return;
  }
  ASSERT_TRUE(OpenEdu());
  start_ = Leaks();
  NewSpace({});
}

void GuestDmaTest::TearDown() {
  space_.reset();  // unmaps what a failed test left mapped
  if (container_) {
    EXPECT_EQ(Leaks(), start_) << "VmLck " << VmLckBytes() << " (was " << start_.vmlck << ")";
  }
}

void GuestDmaTest::NewSpace(dma::EngineConfig config) {
  space_.reset();
  auto space = dma::DmaSpace::Create(container_, config);
  ASSERT_TRUE(space) << space.error().message();
  space_ = std::move(*space);
}

GuestLeaks GuestDmaTest::Leaks() const {
  auto info = container_->IommuInfo();
  EXPECT_TRUE(info) << info.error().message();
  return {.vmlck = VmLckBytes(),
          .fds = CountOpenFds(),
          .dma_avail = info ? info->dma_avail : std::nullopt};
}

void GuestDmaTest::MapAndProve(std::shared_ptr<const dma::Backing> backing, uint64_t size) {
  auto report = space_->Map({.backing = backing,
                             .offset = 0,
                             .size = size,
                             .fixed_iova = std::nullopt,
                             .max_iova = kEduDmaLimit - 1,
                             .prot = {},
                             .on_chunk = {},
                             .segments = {}});
  ASSERT_TRUE(report) << report.error().message();
  EXPECT_LE(report->iova + report->size, kEduDmaLimit) << "placed above edu's 28-bit mask";
  EXPECT_EQ(report->backing, backing->kind());
  auto* bytes = static_cast<std::byte*>(backing->data());
  constexpr uint32_t kLen = 2048;
  std::span<std::byte> src(bytes + 64, kLen);
  // Into the mapping's last page, leaving room for the guard byte after it.
  const uint64_t dst_offset = report->size - kPage + 1024;
  std::span<std::byte> dst(bytes + dst_offset, kLen);
  Randomize(src);
  ExpectRoundTrip(*edu_, src, report->iova + 64, dst, report->iova + dst_offset,
                  EduCompletion::kPoll);
  // The pins are accounted: VmLck grew by the mapping (MMIO excepted).
  if (report->pinned) {
    EXPECT_GE(VmLckBytes(), start_.vmlck + report->size);
  }
  // The contiguity report, computed on demand, agrees with pagemap's ground truth.
  if (report->pinned) {
    auto contiguity = space_->Contiguity(report->id);
    ASSERT_TRUE(contiguity) << contiguity.error().message();
    if (contiguity->state == dma::PhysState::kKnown) {
      EXPECT_EQ(contiguity->run_count, CountRuns(report->vaddr, report->size));
      EXPECT_EQ(contiguity->pages_not_present, 0u);
    }
  }
  auto unmapped = space_->Unmap(report->id);
  ASSERT_TRUE(unmapped) << unmapped.error().message();
  EXPECT_EQ(unmapped->bytes, report->size);
}

void GuestDmaTest::ExpectSuperpageCongruent(const dma::MappingReport& report, uint64_t page) {
  uint64_t blocks = 0;
  for (uint64_t offset = 0; offset + page <= report.size; offset += page) {
    const uint64_t paddr = PfnOf(report.vaddr + offset) * kPage;
    ASSERT_NE(paddr, 0u) << "page not present at offset " << offset;
    if (paddr % page != 0) {
      continue;  // not the start of a physical superpage
    }
    ++blocks;
    EXPECT_EQ((report.iova + offset) % page, 0u)
        << "IOVA 0x" << std::hex << report.iova + offset << " maps physical superpage 0x" << paddr
        << " off its " << std::dec << page << "-byte alignment";
  }
  EXPECT_GT(blocks, 0u) << "no physical superpage of " << page << " bytes in the mapping";
}

}  // namespace vfiod::testing
