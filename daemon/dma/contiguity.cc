#include "dma/contiguity.h"

#include <fmt/format.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <limits>
#include <map>
#include <optional>

#include "dma/huge_share.h"

namespace vfiod::dma {
namespace {

constexpr const char* kOp = "contiguity scan";
constexpr uint64_t kBatchEntries = 8192;                  // 64 KiB of entries per pread
constexpr uint64_t kFirstFlagWindow = kPage2M / kPage4K;  // one 2 MiB folio's flags
constexpr uint64_t kMaxFolioPages = kPage1G / kPage4K;    // no folio is larger

std::string SizeName(uint64_t bytes) {
  if (bytes >= kPage1G && bytes % kPage1G == 0) {
    return fmt::format("{} GiB", bytes / kPage1G);
  }
  if (bytes >= (1u << 20) && bytes % (1u << 20) == 0) {
    return fmt::format("{} MiB", bytes >> 20);
  }
  return fmt::format("{} KiB", bytes >> 10);
}

// Adds one pagemap entry describing `bytes` at `vaddr` to the runs.
void AddEntry(ContiguityScan* scan, uint64_t vaddr, uint64_t entry, uint64_t bytes, bool* hidden) {
  if ((entry & kPagemapPresent) == 0) {
    scan->report.pages_not_present += bytes / kPage4K;
    return;
  }
  uint64_t pfn = entry & kPagemapPfnMask;
  if (pfn == 0) {
    *hidden = true;  // PFNs are zeroed for readers without CAP_SYS_ADMIN
    return;
  }
  uint64_t paddr = pfn * kPage4K;
  std::vector<PhysRun>& runs = scan->runs;
  if (!runs.empty() && runs.back().vaddr + runs.back().len == vaddr &&
      runs.back().paddr + runs.back().len == paddr) {
    runs.back().len += bytes;
  } else {
    runs.push_back(PhysRun{vaddr, paddr, bytes});
  }
}

void CountFolio(ContiguityReport* report, uint64_t size) {
  if (size == kPage2M) {
    ++report->folios_2m;
  } else if (size == kPage1G) {
    ++report->folios_1g;
  } else {
    ++report->folios_other;
  }
}

void AddFolio(ContiguityScan* scan, Folio folio) {
  if (!scan->folios.empty() && scan->folios.back() == folio) {
    return;
  }
  scan->folios.push_back(folio);
  CountFolio(&scan->report, folio.size);
}

// Hugetlb (or forced 4K) backing: the folio size is known, so one pagemap
// entry per folio says where each folio is; kpageflags is not needed.
Result<void> ScanKnownFolios(PageInfoReader& reader, ContiguityScan* scan, uint64_t folio_size,
                             bool* hidden) {
  uint64_t pages_per_entry = folio_size / kPage4K;
  uint64_t count = scan->len / folio_size;
  // Consecutive entries when every page is a folio; else one entry per folio.
  uint64_t batch = pages_per_entry == 1 ? std::min(count, kBatchEntries) : 1;
  std::vector<uint64_t> buf(batch);
  for (uint64_t i = 0; i < count; i += batch) {
    uint64_t n = std::min(batch, count - i);
    uint64_t vaddr = scan->addr + i * folio_size;
    VFIOD_TRY(reader.ReadPagemap(vaddr / kPage4K, std::span(buf.data(), n)));
    for (uint64_t j = 0; j < n; ++j) {
      AddEntry(scan, vaddr + j * folio_size, buf[j], folio_size, hidden);
      if (folio_size > kPage4K) {
        AddFolio(scan, Folio{vaddr + j * folio_size, folio_size});
      }
    }
  }
  return Ok();
}

// Any backing: pagemap in 64 KiB batches, every 4 KiB page.
Result<void> ScanPages(PageInfoReader& reader, ContiguityScan* scan, bool* hidden) {
  uint64_t pages = scan->len / kPage4K;
  std::vector<uint64_t> buf(std::min(pages, kBatchEntries));
  for (uint64_t done = 0; done < pages;) {
    uint64_t n = std::min(kBatchEntries, pages - done);
    uint64_t vaddr = scan->addr + done * kPage4K;
    VFIOD_TRY(reader.ReadPagemap(vaddr / kPage4K, std::span(buf.data(), n)));
    for (uint64_t j = 0; j < n; ++j) {
      AddEntry(scan, vaddr + j * kPage4K, buf[j], kPage4K, hidden);
    }
    done += n;
  }
  return Ok();
}

// A window of kpageflags entries, refilled in batches as the walk moves on.
class FlagWindow {
 public:
  explicit FlagWindow(PageInfoReader& reader) : reader_(reader) {}
  /// Flags of `pfn`; a refill reads up to `end` (exclusive, > pfn).
  Result<uint64_t> Get(uint64_t pfn, uint64_t end) {
    if (pfn < start_ || pfn - start_ >= buf_.size()) {
      buf_.resize(std::min(end - pfn, kBatchEntries));
      VFIOD_TRY(reader_.ReadKpageflags(pfn, buf_));
      start_ = pfn;
    }
    return buf_[pfn - start_];
  }

 private:
  PageInfoReader& reader_;
  uint64_t start_ = 0;
  std::vector<uint64_t> buf_;
};

// Walks kpageflags backwards from a tail page to its head; nullopt when the
// flags are inconsistent (the folio was split while we looked).
Result<std::optional<uint64_t>> FindHead(PageInfoReader& reader, uint64_t tail_pfn) {
  std::vector<uint64_t> buf;
  uint64_t hi = tail_pfn;  // entries below hi are still to look at
  uint64_t window = kFirstFlagWindow;
  while (hi > 0 && tail_pfn - hi < kMaxFolioPages) {
    uint64_t lo = hi - std::min(hi, window);
    buf.resize(hi - lo);
    VFIOD_TRY(reader.ReadKpageflags(lo, buf));
    for (uint64_t i = buf.size(); i-- > 0;) {
      if (buf[i] & kKpfCompoundHead) {
        return std::optional<uint64_t>(lo + i);
      }
      if ((buf[i] & kKpfCompoundTail) == 0) {
        return std::optional<uint64_t>();
      }
    }
    hi = lo;
    window = kBatchEntries;
  }
  return std::optional<uint64_t>();
}

// Counts the pages of the folio headed at `head`: the head plus the tails
// that follow it. Reads through `window`, which already holds the run's flags
// in the common case; past `run_end` it reads one entry, then 2 MiB worth of
// entries at a time (a folio may go on beyond the scanned range). A read past the last PFN
// ends the count.
Result<uint64_t> CountFolioPages(FlagWindow& window, uint64_t head, uint64_t run_end) {
  uint64_t pages = 1;
  while (pages < kMaxFolioPages) {
    uint64_t pfn = head + pages;
    // At the run's end one entry usually settles it (folios end with runs).
    uint64_t want = pfn == run_end ? 1 : kFirstFlagWindow;
    auto flags = window.Get(pfn, std::max(run_end, pfn + want));
    if (!flags) {
      if (flags.error().code == EIO) {
        return pages;
      }
      return std::unexpected(flags.error());
    }
    if ((*flags & kKpfCompoundTail) == 0) {
      return pages;
    }
    ++pages;
  }
  return pages;
}

// Finds the large folios of one physical run of two or more pages.
Result<void> ResolveRunFolios(PageInfoReader& reader, const PhysRun& run, ContiguityScan* scan) {
  FlagWindow window(reader);
  uint64_t first_pfn = run.paddr / kPage4K;
  uint64_t end_pfn = first_pfn + run.len / kPage4K;
  for (uint64_t pfn = first_pfn; pfn < end_pfn;) {
    uint64_t flags = VFIOD_TRY(window.Get(pfn, end_pfn));
    std::optional<uint64_t> head;
    if (flags & kKpfCompoundHead) {
      head = pfn;
    } else if (flags & kKpfCompoundTail) {
      head = VFIOD_TRY(FindHead(reader, pfn));
    }
    uint64_t vaddr = run.vaddr + (pfn - first_pfn) * kPage4K;
    uint64_t before = head ? (pfn - *head) * kPage4K : 0;
    if (!head || before > vaddr) {  // a 4 KiB page (or a folio we cannot place)
      ++scan->report.folios_4k;
      ++pfn;
      continue;
    }
    uint64_t pages = VFIOD_TRY(CountFolioPages(window, *head, end_pfn));
    AddFolio(scan, Folio{vaddr - before, pages * kPage4K});
    pfn = std::min(end_pfn, *head + pages);
  }
  return Ok();
}

Result<void> ResolveFolios(PageInfoReader& reader, ContiguityScan* scan) {
  for (const PhysRun& run : scan->runs) {
    if (run.len == kPage4K) {
      ++scan->report.folios_4k;  // a lone page offers no superpage
      continue;
    }
    auto resolved = ResolveRunFolios(reader, run, scan);
    if (!resolved && resolved.error().code == EACCES) {
      scan->folios.clear();
      ContiguityReport& r = scan->report;
      r.folios_2m = r.folios_1g = r.folios_other = 0;
      r.folios_4k = r.pages - r.pages_not_present;
      r.folio_source = "assumed";
      r.note = "kpageflags unreadable: folio sizes unknown, 4 KiB boundaries assumed";
      return Ok();
    }
    VFIOD_TRY(std::move(resolved));
  }
  return Ok();
}

void FinishReport(ContiguityScan* scan) {
  ContiguityReport& r = scan->report;
  r.run_count = scan->runs.size();
  for (const PhysRun& run : scan->runs) {
    ++r.run_histogram[std::bit_width(run.len / kPage4K) - 1];
  }
}

Result<void> CheckArgs(uint64_t addr, uint64_t len, uint64_t folio_size) {
  if (folio_size != 0 && folio_size != kPage4K && folio_size != kPage2M && folio_size != kPage1G) {
    return Fail(EINVAL, kOp, fmt::format("folio size {:#x} is not 4K, 2M or 1G", folio_size));
  }
  if (len == 0) {
    return Fail(EINVAL, kOp, "length is 0");
  }
  uint64_t align = std::max(folio_size, kPage4K);
  if (addr % align != 0 || len % align != 0) {
    return Fail(
        EINVAL, kOp,
        fmt::format("range {:#x} (+{:#x}) is not aligned to {}", addr, len, SizeName(align)));
  }
  if (addr > std::numeric_limits<uint64_t>::max() - (len - 1)) {
    return Fail(EINVAL, kOp, fmt::format("range {:#x} (+{:#x}) wraps", addr, len));
  }
  return Ok();
}

}  // namespace

namespace {

// PFNs hidden: the folio counts from what needs no privilege (see
// ScanContiguity), and a note saying what is missing and why.
void DescribeHidden(PageInfoReader& reader, ContiguityScan* scan, uint64_t folio_size) {
  ContiguityReport& r = scan->report;
  constexpr const char* kHidden =
      "physical addresses hidden (no CAP_SYS_ADMIN): no physical runs, virtual-only planning";
  if (folio_size > kPage4K) {
    r.note = fmt::format("{}, with {} folios from the backing", kHidden, SizeName(folio_size));
    return;
  }
  r.folios_4k = r.pages;
  if (folio_size == kPage4K) {
    r.note = fmt::format("{}, with 4 KiB pages from the backing", kHidden);
    return;
  }
  std::optional<uint64_t> huge;
  if (auto smaps = reader.ReadSmaps()) {
    if (auto counted = HugeBytesFromSmaps(*smaps, scan->addr, scan->len)) {
      huge = *counted;
    }
  }
  if (!huge) {
    r.folio_source = "assumed";
    r.note =
        fmt::format("{}, 4 KiB boundaries assumed (smaps cannot count a part of a VMA)", kHidden);
    return;
  }
  r.folio_source = "smaps";
  r.folios_2m = *huge / kPage2M;
  r.folios_4k = (scan->len - r.folios_2m * kPage2M) / kPage4K;
  r.note = fmt::format("{}; folio sizes from smaps: {} of {} in PMD-mapped 2 MiB folios", kHidden,
                       SizeName(r.folios_2m * kPage2M), SizeName(scan->len));
}

}  // namespace

Result<ContiguityScan> ScanContiguity(PageInfoReader& reader, uint64_t addr, uint64_t len,
                                      uint64_t folio_size) {
  VFIOD_TRY(CheckArgs(addr, len, folio_size));
  ContiguityScan scan;
  scan.addr = addr;
  scan.len = len;
  scan.report.pages = len / kPage4K;
  bool hidden = false;
  if (folio_size != 0) {
    VFIOD_TRY(ScanKnownFolios(reader, &scan, folio_size, &hidden));
    if (folio_size == kPage4K) {
      scan.report.folios_4k = scan.report.pages;
    }
  } else {
    VFIOD_TRY(ScanPages(reader, &scan, &hidden));
  }
  if (folio_size != 0) {
    scan.report.folio_source = "backing";
  }
  if (hidden) {
    scan.runs.clear();
    scan.report.state = PhysState::kUnknown;
    DescribeHidden(reader, &scan, folio_size);
  } else if (folio_size == 0) {
    VFIOD_TRY(ResolveFolios(reader, &scan));
  }
  FinishReport(&scan);
  return scan;
}

namespace {

// Bytes of [first, first+len) covered by whole, page-aligned pages of `page`
// (alignment taken on `base` + offset, where base is the PA or VA origin).
uint64_t AlignedBlockBytes(uint64_t first, uint64_t len, uint64_t page) {
  uint64_t end = first + len;
  uint64_t start = (first + page - 1) & ~(page - 1);
  if (start < first || start >= end) {  // also covers overflow
    return 0;
  }
  return (end - start) & ~(page - 1);
}

// Best residue for page size `page`, or nullopt when no block benefits.
std::optional<Congruence> BestResidue(const ContiguityScan& scan, uint64_t page) {
  std::map<uint64_t, uint64_t> bytes_by_residue;
  if (scan.report.state == PhysState::kKnown) {
    for (const PhysRun& run : scan.runs) {
      uint64_t bytes = AlignedBlockBytes(run.paddr, run.len, page);
      // iova - vaddr must equal paddr - vaddr (mod page) for this run.
      if (bytes != 0) {
        bytes_by_residue[(scan.addr + run.paddr - run.vaddr) & (page - 1)] += bytes;
      }
    }
  } else {
    // Folios are naturally aligned in VA and PA: iova must follow the VA.
    for (const Folio& folio : scan.folios) {
      if (folio.size < page) {
        continue;
      }
      uint64_t first = std::max(folio.vaddr, scan.addr);
      uint64_t end = std::min(folio.vaddr + folio.size, scan.addr + scan.len);
      if (first < end) {
        uint64_t bytes = AlignedBlockBytes(first, end - first, page);
        if (bytes != 0) {
          bytes_by_residue[scan.addr & (page - 1)] += bytes;
        }
      }
    }
  }
  auto best =
      std::ranges::max_element(bytes_by_residue, {}, [](const auto& e) { return e.second; });
  if (best == bytes_by_residue.end()) {
    return std::nullopt;
  }
  return Congruence{page, best->first};
}

}  // namespace

Congruence ChooseCongruence(const ContiguityScan& scan, uint64_t iova_pgsizes) {
  for (int bit = std::countr_zero(kPage1G); bit > std::countr_zero(kPage4K); --bit) {
    uint64_t page = uint64_t{1} << bit;
    if ((iova_pgsizes & page) == 0) {
      continue;
    }
    if (auto congruence = BestResidue(scan, page)) {
      return *congruence;
    }
  }
  return Congruence{};
}

}  // namespace vfiod::dma
