// Physical contiguity and folio layout of a virtual range of this process,
// read from /proc/self/pagemap and /proc/kpageflags. Pure planning input: no
// VFIO I/O. The two proc files sit behind PageInfoReader so tests can feed a
// synthetic memory layout.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "proto/page_sizes.h"
#include "proto/result.h"
#include "proto/unique_fd.h"

namespace vfiod::dma {

/// Bits of a /proc/self/pagemap entry (Documentation/admin-guide/mm/pagemap.rst).
inline constexpr uint64_t kPagemapPfnMask = (uint64_t{1} << 55) - 1;  ///< bits 0-54
inline constexpr uint64_t kPagemapSwapped = uint64_t{1} << 62;
inline constexpr uint64_t kPagemapPresent = uint64_t{1} << 63;

/// Bits of a /proc/kpageflags entry (include/uapi/linux/kernel-page-flags.h).
inline constexpr uint64_t kKpfCompoundHead = uint64_t{1} << 15;
inline constexpr uint64_t kKpfCompoundTail = uint64_t{1} << 16;
inline constexpr uint64_t kKpfHuge = uint64_t{1} << 17;  ///< hugetlbfs page
inline constexpr uint64_t kKpfThp = uint64_t{1} << 22;   ///< transparent huge page

/// Where pagemap and kpageflags entries come from. Abstract so tests can model
/// a memory layout. Not thread-safe; one scan at a time per reader.
class PageInfoReader {
 public:
  virtual ~PageInfoReader() = default;
  /// Fills `out` with the pagemap entries of the consecutive virtual pages
  /// starting at page number `first_vpn` (vaddr / 4096). EIO/EINVAL pass through;
  /// a short read fails with EIO.
  virtual Result<void> ReadPagemap(uint64_t first_vpn, std::span<uint64_t> out) = 0;
  /// Fills `out` with the kpageflags entries of the consecutive page frames
  /// starting at `first_pfn`. EACCES when the file is not readable (no
  /// CAP_SYS_ADMIN); a read past the last PFN fails with EIO.
  virtual Result<void> ReadKpageflags(uint64_t first_pfn, std::span<uint64_t> out) = 0;
  /// The text of /proc/self/smaps (huge_share.h reads it where PFNs are
  /// hidden). ENOSYS unless the reader offers it; errno of the read.
  virtual Result<std::string> ReadSmaps() { return Fail(ENOSYS, "smaps", "not offered"); }
};

/// The real reader: pread(2) on /proc/self/pagemap and /proc/kpageflags.
class ProcPageInfoReader final : public PageInfoReader {
 public:
  /// Opens /proc/self/pagemap (required: its errno on failure) and
  /// /proc/kpageflags (optional: without it ReadKpageflags fails with EACCES).
  [[nodiscard]] static Result<std::unique_ptr<ProcPageInfoReader>> Open();
  Result<void> ReadPagemap(uint64_t first_vpn, std::span<uint64_t> out) override;
  Result<void> ReadKpageflags(uint64_t first_pfn, std::span<uint64_t> out) override;
  Result<std::string> ReadSmaps() override;

 private:
  ProcPageInfoReader(UniqueFd pagemap, UniqueFd kpageflags, int kpageflags_errno)
      : pagemap_(std::move(pagemap)),
        kpageflags_(std::move(kpageflags)),
        kpageflags_errno_(kpageflags_errno) {}
  UniqueFd pagemap_;
  UniqueFd kpageflags_;   // invalid when it could not be opened
  int kpageflags_errno_;  // why it could not be opened
};

/// A physically contiguous stretch: [vaddr, vaddr+len) maps to [paddr, paddr+len).
/// A run may cross folio boundaries (only PFN == previous + 1 matters).
struct PhysRun {
  uint64_t vaddr = 0;
  uint64_t paddr = 0;
  uint64_t len = 0;
  bool operator==(const PhysRun&) const = default;
};

/// A folio larger than 4 KiB (a compound page: head + tails), given whole:
/// [vaddr, vaddr+size) may begin before or end after the scanned range.
/// Folios are mapped linearly and are naturally aligned in VA and PA.
struct Folio {
  uint64_t vaddr = 0;
  uint64_t size = 0;
  bool operator==(const Folio&) const = default;
};

/// Whether physical addresses could be read.
enum class PhysState : uint8_t {
  kKnown,    ///< PFNs visible: runs and folios come from pagemap/kpageflags
  kUnknown,  ///< PFNs read as zero (no CAP_SYS_ADMIN): virtual-only planning
};

/// Summary for logs and the status RPC.
struct ContiguityReport {
  PhysState state = PhysState::kKnown;
  uint64_t pages = 0;              ///< 4 KiB pages in the range
  uint64_t pages_not_present = 0;  ///< not populated or swapped out: in no run
  uint64_t run_count = 0;          ///< physical runs (0 when kUnknown)
  /// run_histogram[k] counts runs of [2^k, 2^(k+1)) pages: buckets 1, 2-3, 4-7, ...
  std::array<uint64_t, 64> run_histogram{};
  uint64_t folios_4k = 0;  ///< 4 KiB pages outside any large folio
  uint64_t folios_2m = 0;  ///< large folios overlapping the range, by size
  uint64_t folios_1g = 0;
  uint64_t folios_other = 0;  ///< large folios of any other size (mTHP)
  /// Where the folio counts come from: "kpageflags" (read per page),
  /// "backing" (its page size, known for the whole range), "smaps" (PFNs
  /// hidden: PMD-mapped bytes of the range's VMAs, positions unknown) or
  /// "assumed" (nothing could say: 4 KiB boundaries assumed).
  std::string folio_source = "kpageflags";
  std::string note;  ///< why the state is degraded, what was assumed; empty if nothing
};

/// Result of ScanContiguity for [addr, addr+len).
struct ContiguityScan {
  uint64_t addr = 0;
  uint64_t len = 0;
  std::vector<PhysRun> runs;  ///< VA order, present pages only; empty when kUnknown
  std::vector<Folio> folios;  ///< large folios overlapping the range, VA order
  ContiguityReport report;
};

/// Scans [addr, addr+len) of this process through `reader`.
/// `folio_size` is the backing's page size when it is known for the whole
/// range (kPage2M or kPage1G for hugetlb, kPage4K for memory that cannot hold
/// large folios), or 0 when unknown (anonymous memory that may hold THP).
/// With a known size one pagemap entry is read per folio and kpageflags is not
/// read; otherwise pagemap is read in 64 KiB batches and kpageflags only for
/// pages in runs of two or more pages (a large folio of which a single page is
/// mapped here offers no superpage, so such a page counts as 4 KiB).
/// When PFNs read as zero (no CAP_SYS_ADMIN) the scan degrades: no runs,
/// report.state == kUnknown with a note, and folio counts from what needs no
/// privilege: a known `folio_size`, else the reader's smaps when the range
/// is whole VMAs (counts only: `folios` stays empty), else 4 KiB assumed.
/// EINVAL: len is 0, addr/len not 4 KiB aligned, not aligned to a known
/// folio_size, folio_size not 0/4K/2M/1G, or the range wraps.
/// Errors of the reader pass through (except kpageflags EACCES: degrades to
/// 4 KiB folios with a note).
[[nodiscard]] Result<ContiguityScan> ScanContiguity(PageInfoReader& reader, uint64_t addr,
                                                    uint64_t len, uint64_t folio_size = 0);

/// A congruence the IOVA of the first byte of a scanned range should satisfy,
/// so that the IOMMU can use superpages: iova % modulus == residue.
struct Congruence {
  uint64_t modulus = kPage4K;  ///< a power of two; kPage4K means "no constraint"
  uint64_t residue = 0;        ///< < modulus
  bool operator==(const Congruence&) const = default;
};

/// Chooses the congruence for mapping the whole of `scan` with one constant
/// IOVA - vaddr offset: the largest page size in `iova_pgsizes` (at most 1 GiB)
/// that some aligned physical block of a run (kKnown) or some folio (kUnknown,
/// where folios are naturally aligned in VA and PA) could use. Runs may need
/// different residues; the one whose aligned blocks cover the most bytes wins.
/// Returns modulus kPage4K when nothing benefits.
[[nodiscard]] Congruence ChooseCongruence(const ContiguityScan& scan, uint64_t iova_pgsizes);

}  // namespace vfiod::dma
