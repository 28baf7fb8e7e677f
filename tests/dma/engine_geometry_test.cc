// The map path reads no pagemap where the backing's geometry is known
// (counted through the PageInfoReader), and the report computed on demand is
// the scan the map path used to make.
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include "engine_fixture.h"

namespace vfiod::dma::testing {
namespace {

// Delegates to the real reader and counts the calls.
class CountingReader final : public PageInfoReader {
 public:
  CountingReader() : real_(ProcPageInfoReader::Open().value()) {}
  Result<void> ReadPagemap(uint64_t first_vpn, std::span<uint64_t> out) override {
    ++reads;
    return real_->ReadPagemap(first_vpn, out);
  }
  Result<void> ReadKpageflags(uint64_t first_pfn, std::span<uint64_t> out) override {
    ++reads;
    return real_->ReadKpageflags(first_pfn, out);
  }
  int reads = 0;

 private:
  std::unique_ptr<ProcPageInfoReader> real_;
};

class EngineGeometryTest : public EngineTest {
 protected:
  void SetUp() override {
    EngineTest::SetUp();
    auto reader = std::make_unique<CountingReader>();
    reader_ = reader.get();
    space_.reset();
    space_ = DmaSpace::Create(container_, {}, std::move(reader)).value();
  }
  // Maps, expects no read, and returns the report.
  MappingReport MapWithoutReads(MapRequest request) {
    auto report = space_->Map(std::move(request));
    EXPECT_TRUE(report) << report.error().message();
    EXPECT_EQ(reader_->reads, 0);
    return report ? *report : MappingReport{};
  }
  CountingReader* reader_ = nullptr;  // owned by space_
};

// Anonymous memory described as 2 MiB hugetlb: the geometry is all the engine
// looks at (the model pins whatever memory is there).
std::shared_ptr<const Backing> DescribedHugetlb(uint64_t size) {
  auto memory =
      MapAligned(size, kPage2M, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  EXPECT_TRUE(memory) << memory.error().message();
  BackingParts parts;
  parts.kind = BackingKind::kHugetlb2M;
  parts.vaddr = memory->vaddr();
  parts.size = size;
  parts.page_size = kPage2M;
  parts.alignment = kPage2M;
  parts.memory = std::move(*memory);
  return std::make_shared<const Backing>(Backing(std::move(parts)));
}

TEST_F(EngineGeometryTest, HugetlbIsPlacedFromItsPageSizeWithoutReads) {
  auto backing = DescribedHugetlb(4 * kPage2M);
  MappingReport report = MapWithoutReads({.backing = backing});
  EXPECT_EQ(report.congruence, (Congruence{kPage2M, 0}));
  EXPECT_EQ(report.iova % kPage2M, 0u);
  // A slice starting inside a huge page keeps the later pages aligned.
  report = MapWithoutReads({.backing = backing, .offset = 3 * kPage4K, .size = 2 * kPage2M});
  EXPECT_EQ(report.congruence, (Congruence{kPage2M, 3 * kPage4K}));
  EXPECT_EQ(report.iova % kPage2M, 3 * kPage4K);
}

TEST_F(EngineGeometryTest, HugetlbChunksAreCutAtHugePageBoundaries) {
  NewSpace({.chunk_bytes = kPage2M + kPage2M / 2});
  auto backing = DescribedHugetlb(4 * kPage2M);
  auto report = space_->Map({.backing = backing});
  ASSERT_TRUE(report) << report.error().message();
  EXPECT_EQ(report->chunks, 4u);
  for (const Entry& m : ModelEntries()) {
    EXPECT_EQ(m.size, kPage2M);
  }
}

TEST_F(EngineGeometryTest, ThpIsPlacedForPmdFoliosWithoutReads) {
  for (bool shareable : {false, true}) {
    SCOPED_TRACE(shareable ? "shmem" : "anonymous");
    auto backing =
        std::make_shared<const Backing>(CreateThpBacking(2 * kPage2M, shareable).value());
    MappingReport report = MapWithoutReads({.backing = backing});
    EXPECT_EQ(report.congruence, (Congruence{kPage2M, 0}));
  }
}

TEST_F(EngineGeometryTest, ClientShmemSlicesArePlacedWithoutReads) {
  UniqueFd fd(::memfd_create("geometry", MFD_CLOEXEC | MFD_ALLOW_SEALING));
  ASSERT_EQ(::ftruncate(fd.get(), 4 * kPage2M), 0);
  auto backing = std::make_shared<const Backing>(
      AdoptClientFd(std::move(fd), kPage2M + 5 * kPage4K, 2 * kPage2M).value());
  MappingReport report = MapWithoutReads({.backing = backing});
  EXPECT_EQ(report.congruence, (Congruence{kPage2M, 5 * kPage4K}));
  for (uint64_t slice = 0; slice < 64; ++slice) {
    MapWithoutReads({.backing = backing, .offset = slice * kPage4K, .size = kPage4K});
  }
}

TEST_F(EngineGeometryTest, FourKilobytePagesArePlacedWithoutReads) {
  MappingReport report = MapWithoutReads({.backing = Pages(8 * kPage4K)});
  EXPECT_EQ(report.congruence, Congruence{});
}

TEST_F(EngineGeometryTest, TheReportOnDemandIsTheScanOfTheMappedMemory) {
  auto thp = std::make_shared<const Backing>(CreateThpBacking(2 * kPage2M, false).value());
  auto pages = Pages(64 * kPage4K);
  auto reader = ProcPageInfoReader::Open().value();
  for (const auto& [backing, folio_size] :
       {std::pair{thp, uint64_t{0}}, std::pair{pages, kPage4K}}) {
    auto report = space_->Map({.backing = backing, .offset = kPage4K, .size = 32 * kPage4K});
    ASSERT_TRUE(report) << report.error().message();
    auto on_demand = space_->Contiguity(report->id);
    ASSERT_TRUE(on_demand) << on_demand.error().message();
    EXPECT_GT(reader_->reads, 0);
    const ContiguityReport direct =
        ScanContiguity(*reader, report->vaddr, report->size, folio_size).value().report;
    EXPECT_EQ(on_demand->state, direct.state);
    EXPECT_EQ(on_demand->pages, direct.pages);
    EXPECT_EQ(on_demand->pages_not_present, direct.pages_not_present);
    EXPECT_EQ(on_demand->run_count, direct.run_count);
    EXPECT_EQ(on_demand->run_histogram, direct.run_histogram);
    EXPECT_EQ(on_demand->folios_4k, direct.folios_4k);
    EXPECT_EQ(on_demand->folios_2m, direct.folios_2m);
    EXPECT_EQ(on_demand->note, direct.note);
  }
}

}  // namespace
}  // namespace vfiod::dma::testing
