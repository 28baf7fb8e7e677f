// Where the time of a map through vfiod goes: the daemon's steps for
// dma.map_fd and dma.free, redone here with the same dma-layer calls.
#include <fcntl.h>

#include <fstream>
#include <memory>
#include <string>

#include "common/stats.h"
#include "dma/backing.h"
#include "dma/contiguity.h"
#include "guest/sections.h"

namespace vfiod::bench {
namespace {

// A "Name: N kB" field of /proc/self/smaps_rollup, in bytes.
uint64_t SmapsRollup(const std::string& name) {
  std::ifstream in("/proc/self/smaps_rollup");
  for (std::string line; std::getline(in, line);) {
    if (line.starts_with(name + ":")) {
      return std::stoull(line.substr(name.size() + 1)) << 10;
    }
  }
  return 0;
}

// One pass; appends its timings to `out`.
Result<void> OnePass(const GuestRig& rig, dma::PageInfoReader& reader, int fd, uint64_t size,
                     Breakdown& out) {
  UniqueFd copy(::fcntl(fd, F_DUPFD_CLOEXEC, 0));
  if (!copy) {
    return ErrnoError("dup");
  }
  const uint64_t pmd_before = SmapsRollup("ShmemPmdMapped");
  Result<dma::Backing> adopted = Fail(EINVAL, "adopt");
  out.adopt_s.push_back(
      TimeSeconds([&] { adopted = dma::AdoptClientFd(std::move(copy), 0, size); }));
  auto backing = std::make_unique<dma::Backing>(VFIOD_TRY(std::move(adopted)));
  // Is the view mapped so THPs can be PMD-mapped (2 MiB aligned), and were they?
  out.view_offset_2m = backing->vaddr() % dma::kPage2M;
  out.pmd_mapped = SmapsRollup("ShmemPmdMapped") - pmd_before;
  // As DmaSpace::Scan for a client fd: hugetlbfs has a known folio size, shmem may hold THP.
  const uint64_t folio = backing->page_size() > dma::kPage4K ? backing->page_size() : 0;
  dma::Congruence congruence;
  Result<void> scanned = Ok();
  out.scan_s.push_back(TimeSeconds([&] {
    auto scan = dma::ScanContiguity(reader, backing->vaddr(), size, folio);
    if (!scan) {
      scanned = std::unexpected(scan.error());
      return;
    }
    congruence = dma::ChooseCongruence(*scan, rig.iova_pgsizes());
  }));
  VFIOD_TRY(scanned);
  const uint64_t iova = kRawIova + congruence.residue;
  Result<void> step = Ok();
  out.map_s.push_back(TimeSeconds([&] { step = rig.Map(backing->vaddr(), iova, size); }));
  VFIOD_TRY(step);
  out.unmap_s.push_back(TimeSeconds([&] { step = rig.Unmap(iova, size); }));
  VFIOD_TRY(step);
  out.release_s.push_back(TimeSeconds([&] { backing.reset(); }));
  return Ok();
}

}  // namespace

Result<Breakdown> BreakDownMapFd(const GuestRig& rig, int fd, uint64_t size, int loops) {
  auto reader = VFIOD_TRY(dma::ProcPageInfoReader::Open());
  Breakdown warmup;
  VFIOD_TRY(OnePass(rig, *reader, fd, size, warmup));
  Breakdown out;
  for (int i = 0; i < loops; ++i) {
    VFIOD_TRY(OnePass(rig, *reader, fd, size, out));
  }
  return out;
}

}  // namespace vfiod::bench
