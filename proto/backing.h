// The memory behind a mapping or a region, as the wire names it ("backing" in
// dma.alloc's params and in every mapping and region object). The one place
// these names are spelled: the daemon, the state record and the clients all
// convert through BackingName / ParseBacking.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace vfiod::wire {

enum class Backing : uint8_t {
  k4K,         ///< "4k": 4 KiB pages
  kThp,        ///< "thp": transparent huge pages
  kHugetlb2M,  ///< "hugetlb-2m": hugetlbfs, 2 MiB pages
  kHugetlb1G,  ///< "hugetlb-1g": hugetlbfs, 1 GiB pages
  kMemfd,      ///< "memfd": a client's memfd or tmpfs file
  kBar,        ///< "bar": a device's MMIO BAR (peer to peer)
};

/// The wire name of `backing` ("4k", "thp", ...).
[[nodiscard]] std::string_view BackingName(Backing backing);

/// The backing named `name` (exact, lower case), or nullopt for an unknown name.
[[nodiscard]] std::optional<Backing> ParseBacking(std::string_view name);

/// The names of the backings dma.alloc accepts (the first four), for a CLI's
/// choice list.
[[nodiscard]] std::vector<std::string> AllocBackingNames();

/// The page size an allocation of `backing` is made of (4 KiB for the file
/// backings, whose page size is the file's).
[[nodiscard]] uint64_t BackingPageSize(Backing backing);

}  // namespace vfiod::wire
