// How much of a range of vfiod's view of memory sits in folios of 2 MiB or
// more, as the IOMMU needs them for superpages: what `"require": "thp"`
// checks and what the map replies then report. Two sources: the PFN scan
// (contiguity.h), exact for any range but blind without CAP_SYS_ADMIN, and
// /proc/self/smaps, which needs no privilege but counts per VMA.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "proto/result.h"

namespace vfiod::dma {

/// The huge share of a mapping's memory.
struct HugeShare {
  uint64_t bytes = 0;       ///< the memory looked at
  uint64_t huge_bytes = 0;  ///< of it, in folios of 2 MiB or more (mapped as such in smaps)
  std::string source;       ///< "pagemap" (PFN scan or the backing's page size) or "smaps"
  [[nodiscard]] bool all_huge() const { return huge_bytes == bytes; }
};

/// The bytes of [addr, addr + len) that `smaps` (the text of /proc/PID/smaps)
/// shows mapped by 2 MiB-or-larger entries: AnonHugePages, ShmemPmdMapped and
/// FilePmdMapped of ordinary VMAs, Shared_Hugetlb + Private_Hugetlb of VMAs
/// whose KernelPageSize is 2 MiB or more. smaps counts per VMA, so the answer
/// is nullopt unless [addr, addr + len) is exactly a run of whole VMAs.
/// EINVAL: len is 0 or the range wraps; EPROTO: the text is not smaps.
[[nodiscard]] Result<std::optional<uint64_t>> HugeBytesFromSmaps(std::string_view smaps,
                                                                 uint64_t addr, uint64_t len);

}  // namespace vfiod::dma
