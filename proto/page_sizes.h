// The page sizes vfiod works in, the one place they are spelled: x86-64's
// base page and its two huge page sizes (a PMD's 2 MiB and a PUD's 1 GiB),
// which are also the hugetlbfs page sizes and the IOMMU's large pages.
#pragma once

#include <cstdint>

namespace vfiod {

inline constexpr uint64_t kPage4K = uint64_t{1} << 12;
inline constexpr uint64_t kPage2M = uint64_t{1} << 21;
inline constexpr uint64_t kPage1G = uint64_t{1} << 30;

}  // namespace vfiod
