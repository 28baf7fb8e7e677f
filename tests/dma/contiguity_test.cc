// ScanContiguity on a synthetic memory layout (what is read, and how often),
// and ChooseCongruence. The real /proc files are tested in
// contiguity_proc_test.cc.
#include "dma/contiguity.h"

#include <gtest/gtest.h>

#include <cerrno>
#include <cstdio>
#include <limits>
#include <optional>
#include <utility>
#include <vector>

namespace vfiod::dma {
namespace {

constexpr uint64_t kPagesPer2M = kPage2M / kPage4K;
constexpr uint64_t kPagesPer1G = kPage1G / kPage4K;

// A process's page tables and the machine's page flags, as ranges, so a
// 1 GiB folio costs one entry. Logs every read.
class FakeMemory : public PageInfoReader {
 public:
  /// Maps `pages` pages at `vaddr` to consecutive frames from `pfn`.
  void Map(uint64_t vaddr, uint64_t pfn, uint64_t pages) {
    maps_.push_back({vaddr / kPage4K, pages, pfn});
  }
  /// Marks frames [pfn, pfn+pages) as one compound folio with `kind` flags.
  void Folio(uint64_t pfn, uint64_t pages, uint64_t kind) { folios_.push_back({pfn, pages, kind}); }
  /// Maps a folio: pagemap and kpageflags together.
  void MapFolio(uint64_t vaddr, uint64_t pfn, uint64_t pages, uint64_t kind) {
    Map(vaddr, pfn, pages);
    Folio(pfn, pages, kind);
  }
  void HidePfns() { hide_pfns_ = true; }
  /// What ReadSmaps returns (ENOSYS until set).
  void SetSmaps(std::string text) { smaps_ = std::move(text); }
  Result<std::string> ReadSmaps() override {
    if (!smaps_) {
      return Fail(ENOSYS, "smaps", "not offered");
    }
    return *smaps_;
  }
  void DenyKpageflags() { deny_flags_ = true; }

  Result<void> ReadPagemap(uint64_t first_vpn, std::span<uint64_t> out) override {
    pagemap_reads.emplace_back(first_vpn, out.size());
    for (uint64_t i = 0; i < out.size(); ++i) {
      out[i] = Entry(first_vpn + i);
    }
    return Ok();
  }
  Result<void> ReadKpageflags(uint64_t first_pfn, std::span<uint64_t> out) override {
    if (deny_flags_) {
      return Fail(EACCES, "pread /proc/kpageflags");
    }
    flag_reads.emplace_back(first_pfn, out.size());
    if (first_pfn + out.size() > kMaxPfn) {
      return Fail(EIO, "pread /proc/kpageflags", "EOF");
    }
    for (uint64_t i = 0; i < out.size(); ++i) {
      out[i] = Flags(first_pfn + i);
    }
    return Ok();
  }

  std::vector<std::pair<uint64_t, uint64_t>> pagemap_reads;  // (first, count)
  std::vector<std::pair<uint64_t, uint64_t>> flag_reads;
  static constexpr uint64_t kMaxPfn = uint64_t{1} << 24;  // 64 GiB of frames

 private:
  std::optional<std::string> smaps_;
  struct Range {
    uint64_t first;
    uint64_t count;
    uint64_t value;  // pfn of the first page, or flag kind
  };
  uint64_t Entry(uint64_t vpn) const {
    for (const Range& m : maps_) {
      if (vpn >= m.first && vpn - m.first < m.count) {
        return kPagemapPresent | (hide_pfns_ ? 0 : m.value + (vpn - m.first));
      }
    }
    return 0;
  }
  uint64_t Flags(uint64_t pfn) const {
    for (const Range& f : folios_) {
      if (pfn >= f.first && pfn - f.first < f.count) {
        return f.value | (pfn == f.first ? kKpfCompoundHead : kKpfCompoundTail);
      }
    }
    return 0;
  }
  std::vector<Range> maps_;
  std::vector<Range> folios_;
  bool hide_pfns_ = false;
  bool deny_flags_ = false;
};

ContiguityScan Scan(FakeMemory& mem, uint64_t addr, uint64_t len, uint64_t folio_size = 0) {
  auto scan = ScanContiguity(mem, addr, len, folio_size);
  EXPECT_TRUE(scan) << scan.error().message();
  return scan ? std::move(scan).value() : ContiguityScan{};
}

constexpr uint64_t kBase = 0x7f0000000000;  // 1 GiB aligned

TEST(ScanContiguity, RejectsBadArguments) {
  FakeMemory mem;
  EXPECT_EQ(ScanContiguity(mem, kBase, 0).error().code, EINVAL);
  EXPECT_EQ(ScanContiguity(mem, kBase + 1, kPage4K).error().code, EINVAL);
  EXPECT_EQ(ScanContiguity(mem, kBase, kPage4K + 1).error().code, EINVAL);
  EXPECT_EQ(ScanContiguity(mem, kBase + kPage4K, kPage2M, kPage2M).error().code, EINVAL);
  EXPECT_EQ(ScanContiguity(mem, kBase, kPage4K, 0x10000).error().code, EINVAL);
  uint64_t top = std::numeric_limits<uint64_t>::max() - kPage4K + 1;
  EXPECT_EQ(ScanContiguity(mem, top, 2 * kPage4K).error().code, EINVAL);
  EXPECT_TRUE(mem.pagemap_reads.empty());
}

TEST(ScanContiguity, ScatteredPagesFormRunsAndAHistogram) {
  FakeMemory mem;
  mem.Map(kBase, 100, 3);                // run of 3
  mem.Map(kBase + 3 * kPage4K, 200, 1);  // run of 1
  // kBase + 4 pages: not present
  mem.Map(kBase + 5 * kPage4K, 300, 2);  // run of 2
  ContiguityScan scan = Scan(mem, kBase, 7 * kPage4K);
  std::vector<PhysRun> runs = {{kBase, 100 * kPage4K, 3 * kPage4K},
                               {kBase + 3 * kPage4K, 200 * kPage4K, kPage4K},
                               {kBase + 5 * kPage4K, 300 * kPage4K, 2 * kPage4K}};
  EXPECT_EQ(scan.runs, runs);
  const ContiguityReport& r = scan.report;
  EXPECT_EQ(r.state, PhysState::kKnown);
  EXPECT_EQ(r.pages, 7u);
  EXPECT_EQ(r.pages_not_present, 1u);
  EXPECT_EQ(r.run_count, 3u);
  EXPECT_EQ(r.run_histogram[0], 1u);  // 1 page
  EXPECT_EQ(r.run_histogram[1], 2u);  // 2-3 pages
  EXPECT_EQ(r.folios_4k, 6u);
  EXPECT_TRUE(scan.folios.empty());
  EXPECT_TRUE(r.note.empty());
  // Flags were read for the two multi-page runs only, one batch each.
  std::vector<std::pair<uint64_t, uint64_t>> flag_reads = {{100, 3}, {300, 2}};
  EXPECT_EQ(mem.flag_reads, flag_reads);
}

TEST(ScanContiguity, ARunCrossesFolioBoundaries) {
  FakeMemory mem;
  mem.MapFolio(kBase, 0x1000, kPagesPer2M, kKpfThp);
  mem.MapFolio(kBase + kPage2M, 0x1200, kPagesPer2M, kKpfThp);
  mem.Map(kBase + 2 * kPage2M, 0x1400, 2);  // plain pages, still contiguous
  ContiguityScan scan = Scan(mem, kBase, 2 * kPage2M + 2 * kPage4K);
  std::vector<PhysRun> runs = {{kBase, 0x1000 * kPage4K, 2 * kPage2M + 2 * kPage4K}};
  EXPECT_EQ(scan.runs, runs);
  std::vector<Folio> folios = {{kBase, kPage2M}, {kBase + kPage2M, kPage2M}};
  EXPECT_EQ(scan.folios, folios);
  EXPECT_EQ(scan.report.folios_2m, 2u);
  EXPECT_EQ(scan.report.folios_4k, 2u);
  EXPECT_EQ(scan.report.run_histogram[10], 1u);  // 1026 pages: bucket 1024-2047
}

TEST(ScanContiguity, ARangeStartingInsideAFolioReportsTheWholeFolio) {
  FakeMemory mem;
  mem.MapFolio(kBase, 0x4000, kPagesPer2M, kKpfThp);
  ContiguityScan scan = Scan(mem, kBase + kPage2M / 2, kPage2M / 2);
  std::vector<Folio> folios = {{kBase, kPage2M}};
  EXPECT_EQ(scan.folios, folios);
  EXPECT_EQ(scan.report.folios_2m, 1u);
  EXPECT_EQ(scan.report.folios_4k, 0u);
}

TEST(ScanContiguity, FindsA1GFolioThroughSeveralFlagWindows) {
  FakeMemory mem;
  mem.MapFolio(kBase, 0x40000, kPagesPer1G, kKpfHuge);
  ContiguityScan scan = Scan(mem, kBase + kPage1G - 4 * kPage4K, 4 * kPage4K);
  std::vector<Folio> folios = {{kBase, kPage1G}};
  EXPECT_EQ(scan.folios, folios);
  EXPECT_EQ(scan.report.folios_1g, 1u);
}

TEST(ScanContiguity, HugetlbOfKnownSizeReadsOneEntryPerFolioAndNoFlags) {
  FakeMemory mem;
  mem.Map(kBase, 0x10000, 2 * kPagesPer2M);            // folios 0 and 1 adjacent
  mem.Map(kBase + 2 * kPage2M, 0x20000, kPagesPer2M);  // folio 2 elsewhere
  // folio 3 not faulted in yet
  ContiguityScan scan = Scan(mem, kBase, 4 * kPage2M, kPage2M);
  std::vector<std::pair<uint64_t, uint64_t>> reads;
  for (uint64_t i = 0; i < 4; ++i) {
    reads.emplace_back((kBase + i * kPage2M) / kPage4K, 1);
  }
  EXPECT_EQ(mem.pagemap_reads, reads);
  EXPECT_TRUE(mem.flag_reads.empty());
  std::vector<PhysRun> runs = {{kBase, 0x10000 * kPage4K, 2 * kPage2M},
                               {kBase + 2 * kPage2M, 0x20000 * kPage4K, kPage2M}};
  EXPECT_EQ(scan.runs, runs);
  EXPECT_EQ(scan.folios.size(), 4u);
  EXPECT_EQ(scan.report.folios_2m, 4u);
  EXPECT_EQ(scan.report.pages_not_present, kPagesPer2M);
  EXPECT_EQ(scan.report.run_histogram[9], 1u);   // 512 pages
  EXPECT_EQ(scan.report.run_histogram[10], 1u);  // 1024 pages
}

TEST(ScanContiguity, Hugetlb1GReadsTwoEntriesForTwoGigabytes) {
  FakeMemory mem;
  mem.Map(kBase, 0x100000, 2 * kPagesPer1G);
  ContiguityScan scan = Scan(mem, kBase, 2 * kPage1G, kPage1G);
  EXPECT_EQ(mem.pagemap_reads.size(), 2u);
  std::vector<Folio> folios = {{kBase, kPage1G}, {kBase + kPage1G, kPage1G}};
  EXPECT_EQ(scan.folios, folios);
  EXPECT_EQ(scan.report.folios_1g, 2u);
  ASSERT_EQ(scan.runs.size(), 1u);
  EXPECT_EQ(scan.runs[0].len, 2 * kPage1G);
}

TEST(ScanContiguity, PagemapIsReadIn64KiBBatches) {
  FakeMemory mem;
  mem.Map(kBase, 0x100, 10000);
  ContiguityScan scan = Scan(mem, kBase, 10000 * kPage4K);
  std::vector<std::pair<uint64_t, uint64_t>> reads = {{kBase / kPage4K, 8192},
                                                      {kBase / kPage4K + 8192, 1808}};
  EXPECT_EQ(mem.pagemap_reads, reads);
  EXPECT_EQ(scan.runs.size(), 1u);
  // Flags for the one long run: read in 64 KiB windows as well.
  std::vector<std::pair<uint64_t, uint64_t>> flags = {{0x100, 8192}, {0x100 + 8192, 1808}};
  EXPECT_EQ(mem.flag_reads, flags);
}

TEST(ScanContiguity, ThpRunsReadEachFlagEntryAboutOnce) {
  FakeMemory mem;
  for (uint64_t i = 0; i < 20; ++i) {  // 40 MiB of THPs, physically contiguous
    mem.MapFolio(kBase + i * kPage2M, 0x80000 + i * kPagesPer2M, kPagesPer2M, kKpfThp);
  }
  ContiguityScan scan = Scan(mem, kBase, 20 * kPage2M);
  EXPECT_EQ(scan.report.folios_2m, 20u);
  EXPECT_EQ(scan.runs.size(), 1u);
  uint64_t entries = 0;
  for (const auto& [first, count] : mem.flag_reads) {
    entries += count;
  }
  // Every page once, plus the one page after the run that ends the last folio.
  EXPECT_EQ(entries, 20 * kPagesPer2M + 1);
}

TEST(ScanContiguity, HiddenPfnsDegradeToVirtualOnlyPlanning) {
  FakeMemory mem;
  mem.Map(kBase, 0x10000, 2 * kPagesPer2M);
  mem.HidePfns();
  ContiguityScan plain = Scan(mem, kBase, 2 * kPage2M);
  EXPECT_EQ(plain.report.state, PhysState::kUnknown);
  EXPECT_TRUE(plain.runs.empty());
  EXPECT_TRUE(plain.folios.empty());
  EXPECT_EQ(plain.report.run_count, 0u);
  EXPECT_NE(plain.report.note.find("CAP_SYS_ADMIN"), std::string::npos);
  EXPECT_NE(plain.report.note.find("4 KiB"), std::string::npos);
  EXPECT_TRUE(mem.flag_reads.empty());

  ContiguityScan huge = Scan(mem, kBase, 2 * kPage2M, kPage2M);
  EXPECT_EQ(huge.report.state, PhysState::kUnknown);
  std::vector<Folio> folios = {{kBase, kPage2M}, {kBase + kPage2M, kPage2M}};
  EXPECT_EQ(huge.folios, folios);
  EXPECT_NE(huge.report.note.find("2 MiB"), std::string::npos);
  EXPECT_EQ(ChooseCongruence(huge, 0x40201000), (Congruence{kPage2M, kBase % kPage2M}));
}

// One VMA of smaps text: [start, start + size) with `pmd` bytes PMD-mapped shmem.
std::string SmapsVma(uint64_t start, uint64_t size, uint64_t pmd) {
  char head[128];
  std::snprintf(head, sizeof head, "%llx-%llx rw-s 00000000 00:01 42 /memfd:vfiod-thp (deleted)\n",
                static_cast<unsigned long long>(start),
                static_cast<unsigned long long>(start + size));
  return std::string(head) + "Size: " + std::to_string(size >> 10) +
         " kB\nKernelPageSize: 4 kB\nAnonHugePages: 0 kB\nShmemPmdMapped: " +
         std::to_string(pmd >> 10) +
         " kB\nFilePmdMapped: 0 kB\nShared_Hugetlb: 0 kB\n"
         "Private_Hugetlb: 0 kB\nVmFlags: rd wr sh mr mw me ms hg\n";
}

TEST(ScanContiguity, HiddenPfnsTakeFolioSizesFromSmapsForWholeVmas) {
  FakeMemory mem;
  mem.Map(kBase, 0x10000, 4 * kPagesPer2M);
  mem.HidePfns();
  mem.SetSmaps(SmapsVma(kBase, 4 * kPage2M, 3 * kPage2M));
  ContiguityScan whole = Scan(mem, kBase, 4 * kPage2M);
  EXPECT_EQ(whole.report.state, PhysState::kUnknown);
  EXPECT_TRUE(whole.runs.empty());
  EXPECT_EQ(whole.report.folio_source, "smaps");
  EXPECT_EQ(whole.report.folios_2m, 3u);
  EXPECT_EQ(whole.report.folios_4k, kPagesPer2M);
  EXPECT_NE(whole.report.note.find("CAP_SYS_ADMIN"), std::string::npos);
  EXPECT_NE(whole.report.note.find("6 MiB of 8 MiB"), std::string::npos) << whole.report.note;
  // Part of the VMA: smaps cannot say, so 4 KiB is assumed and said.
  ContiguityScan part = Scan(mem, kBase, 2 * kPage2M);
  EXPECT_EQ(part.report.folio_source, "assumed");
  EXPECT_EQ(part.report.folios_2m, 0u);
  EXPECT_EQ(part.report.folios_4k, 2 * kPagesPer2M);
  EXPECT_NE(part.report.note.find("4 KiB boundaries assumed"), std::string::npos);
  // Visible PFNs never ask smaps: kpageflags says it per page.
  FakeMemory shown;
  shown.MapFolio(kBase, 0x200, kPagesPer2M, kKpfThp);
  shown.SetSmaps("not smaps at all");
  ContiguityScan known = Scan(shown, kBase, kPage2M);
  EXPECT_EQ(known.report.state, PhysState::kKnown);
  EXPECT_EQ(known.report.folio_source, "kpageflags");
  EXPECT_EQ(known.report.folios_2m, 1u);
  EXPECT_EQ(Scan(shown, kBase, kPage2M, kPage2M).report.folio_source, "backing");
}

TEST(ScanContiguity, UnreadableKpageflagsDegradeTo4KFolios) {
  FakeMemory mem;
  mem.MapFolio(kBase, 0x1000, kPagesPer2M, kKpfThp);
  mem.DenyKpageflags();
  ContiguityScan scan = Scan(mem, kBase, kPage2M);
  EXPECT_EQ(scan.report.state, PhysState::kKnown);
  EXPECT_EQ(scan.runs.size(), 1u);
  EXPECT_TRUE(scan.folios.empty());
  EXPECT_EQ(scan.report.folios_4k, kPagesPer2M);
  EXPECT_NE(scan.report.note.find("kpageflags"), std::string::npos);
}

TEST(ChooseCongruence, PrefersTheLargestPageSomeRunCanUse) {
  FakeMemory mem;
  // One physical run from PA 1G - 2M to 2G, so it holds the aligned 1 GiB
  // block [1G, 2G); its VA starts 4 KiB past a 1 GiB boundary.
  uint64_t pfn = (kPage1G - kPage2M) / kPage4K;  // run starts 2 MiB below 1 GiB
  mem.Map(kBase + kPage4K, pfn, kPagesPer1G + kPagesPer2M);
  ContiguityScan scan = Scan(mem, kBase + kPage4K, kPage1G + kPage2M);
  ASSERT_EQ(scan.runs.size(), 1u);
  // iova(addr) must be congruent to paddr(addr) = 1G - 2M modulo 1 GiB.
  EXPECT_EQ(ChooseCongruence(scan, 0x40201000), (Congruence{kPage1G, kPage1G - kPage2M}));
  // Without 1 GiB IOMMU pages, 2 MiB: the same paddr residue modulo 2 MiB.
  EXPECT_EQ(ChooseCongruence(scan, 0x201000), (Congruence{kPage2M, 0}));
  // Only 4 KiB pages: no constraint.
  EXPECT_EQ(ChooseCongruence(scan, 0x1000), (Congruence{kPage4K, 0}));
}

TEST(ChooseCongruence, ScatteredPagesNeedNoCongruence) {
  FakeMemory mem;
  mem.Map(kBase, 0x100, 4);
  mem.Map(kBase + 4 * kPage4K, 0x900, 4);
  ContiguityScan scan = Scan(mem, kBase, 8 * kPage4K);
  EXPECT_EQ(ChooseCongruence(scan, 0x40201000), (Congruence{kPage4K, 0}));
}

TEST(ChooseCongruence, TheResidueCoveringMostBytesWins) {
  FakeMemory mem;
  // Two runs with different PA-VA offsets mod 2 MiB: one holds one aligned
  // 2 MiB block, the other two.
  mem.Map(kBase, 0x210, 2 * kPagesPer2M);                 // PA 2M+64K .. 6M+64K
  mem.Map(kBase + 2 * kPage2M, 0x2020, 3 * kPagesPer2M);  // PA 32M+128K .. 38M+128K
  ContiguityScan scan = Scan(mem, kBase, 5 * kPage2M);
  ASSERT_EQ(scan.runs.size(), 2u);
  EXPECT_EQ(ChooseCongruence(scan, 0x201000), (Congruence{kPage2M, 0x20 * kPage4K}));
}

}  // namespace
}  // namespace vfiod::dma
