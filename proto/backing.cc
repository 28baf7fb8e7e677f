#include "proto/backing.h"

#include <array>

namespace vfiod::wire {

namespace {

constexpr std::array<std::string_view, 6> kNames = {"4k",         "thp",   "hugetlb-2m",
                                                    "hugetlb-1g", "memfd", "bar"};

}  // namespace

std::string_view BackingName(Backing backing) { return kNames.at(static_cast<size_t>(backing)); }

std::optional<Backing> ParseBacking(std::string_view name) {
  for (size_t i = 0; i < kNames.size(); ++i) {
    if (kNames[i] == name) {
      return static_cast<Backing>(i);
    }
  }
  return std::nullopt;
}

std::vector<std::string> AllocBackingNames() {
  return {kNames.begin(), kNames.begin() + static_cast<size_t>(Backing::kHugetlb1G) + 1};
}

uint64_t BackingPageSize(Backing backing) {
  switch (backing) {
    case Backing::kHugetlb2M:
      return uint64_t{2} << 20;
    case Backing::kHugetlb1G:
      return uint64_t{1} << 30;
    default:
      return uint64_t{4} << 10;
  }
}

}  // namespace vfiod::wire
