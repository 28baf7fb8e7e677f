#include <gtest/gtest.h>

#include "proto/backing.h"

namespace vfiod::wire {
namespace {

TEST(BackingName, EveryNameParsesBackToItsBacking) {
  for (Backing b : {Backing::k4K, Backing::kThp, Backing::kHugetlb2M, Backing::kHugetlb1G,
                    Backing::kMemfd, Backing::kBar}) {
    EXPECT_EQ(ParseBacking(BackingName(b)), b) << BackingName(b);
  }
}

TEST(BackingName, WireNamesAreStable) {
  EXPECT_EQ(BackingName(Backing::k4K), "4k");
  EXPECT_EQ(BackingName(Backing::kThp), "thp");
  EXPECT_EQ(BackingName(Backing::kHugetlb2M), "hugetlb-2m");
  EXPECT_EQ(BackingName(Backing::kHugetlb1G), "hugetlb-1g");
  EXPECT_EQ(BackingName(Backing::kMemfd), "memfd");
  EXPECT_EQ(BackingName(Backing::kBar), "bar");
}

TEST(BackingName, UnknownAndMiscasedNamesAreRefused) {
  EXPECT_EQ(ParseBacking("hugetlb-2M"), std::nullopt);
  EXPECT_EQ(ParseBacking(""), std::nullopt);
  EXPECT_EQ(ParseBacking("4k "), std::nullopt);
}

TEST(BackingName, AllocNamesAreTheFourVfiodAllocates) {
  EXPECT_EQ(AllocBackingNames(),
            (std::vector<std::string>{"4k", "thp", "hugetlb-2m", "hugetlb-1g"}));
  EXPECT_EQ(BackingPageSize(Backing::kHugetlb1G), uint64_t{1} << 30);
  EXPECT_EQ(BackingPageSize(Backing::kHugetlb2M), uint64_t{2} << 20);
  EXPECT_EQ(BackingPageSize(Backing::kThp), uint64_t{4} << 10);
}

}  // namespace
}  // namespace vfiod::wire
