// Folio geometry of backings, IOVA congruence from it (no I/O), and the
// 1 GiB probe over a synthetic pagemap (what it reads, and how often).
#include "dma/geometry.h"

#include <gtest/gtest.h>

#include <functional>

namespace vfiod::dma {
namespace {

constexpr uint64_t kAllPages = kPage4K | kPage2M | kPage1G;
constexpr uint64_t kBase = uint64_t{0x7f} << 32;  // 1 GiB aligned

Backing Described(BackingKind kind, uint64_t vaddr, uint64_t page_size, uint64_t fd_offset = 0) {
  BackingParts parts;
  parts.kind = kind;
  parts.vaddr = vaddr;
  parts.size = kPage2M;
  parts.page_size = page_size;
  parts.fd_offset = fd_offset;
  return Backing(std::move(parts));
}

TEST(GeometryOf, FollowsTheKindAndTheViewsPlacement) {
  EXPECT_EQ(GeometryOf(Described(BackingKind::kHugetlb2M, kBase, kPage2M)).folio_size, kPage2M);
  EXPECT_TRUE(GeometryOf(Described(BackingKind::kHugetlb1G, kBase, kPage1G)).exact);
  EXPECT_EQ(GeometryOf(Described(BackingKind::k4K, kBase, kPage4K)).folio_size, kPage4K);
  EXPECT_EQ(GeometryOf(Described(BackingKind::kThp, kBase, kPage4K)).folio_size, kPage2M);
  EXPECT_FALSE(GeometryOf(Described(BackingKind::kThp, kBase, kPage4K)).exact);
  EXPECT_EQ(GeometryOf(Described(BackingKind::kThp, kBase + kPage4K, kPage4K)).folio_size, 0u);
  // shmem client views: the vaddr must follow the file offset mod 2 MiB.
  EXPECT_EQ(GeometryOf(Described(BackingKind::kMemfd, kBase + 0x3000, kPage4K, 0x3000)).folio_size,
            kPage2M);
  EXPECT_EQ(GeometryOf(Described(BackingKind::kMemfd, kBase, kPage4K, 0x3000)).folio_size, 0u);
  EXPECT_EQ(GeometryOf(Described(BackingKind::kMemfd, kBase, kPage1G)).folio_size, kPage1G);
  EXPECT_EQ(GeometryOf(Described(BackingKind::kBar, kBase, kPage4K)).folio_size, 0u);
}

TEST(GeometryCongruence, TheLargestPageOfWhichTheRangeHoldsAnAlignedBlock) {
  EXPECT_EQ(GeometryCongruence(kBase, kPage1G, kPage1G, kAllPages), (Congruence{kPage1G, 0}));
  EXPECT_EQ(GeometryCongruence(kBase + kPage2M, 2 * kPage2M, kPage2M, kAllPages),
            (Congruence{kPage2M, 0}));
  // Starting inside a folio: the residue keeps the later folios aligned.
  EXPECT_EQ(GeometryCongruence(kBase + 0x5000, 2 * kPage2M, kPage2M, kAllPages),
            (Congruence{kPage2M, 0x5000}));
  // Less than a whole aligned block: nothing to gain.
  EXPECT_EQ(GeometryCongruence(kBase + 0x5000, kPage2M, kPage2M, kAllPages), Congruence{});
  EXPECT_EQ(GeometryCongruence(kBase, 4 * kPage2M, kPage4K, kAllPages), Congruence{});
  // Folios of 1 GiB on an IOMMU without 1 GiB pages use 2 MiB.
  EXPECT_EQ(GeometryCongruence(kBase, kPage1G, kPage1G, kPage4K | kPage2M),
            (Congruence{kPage2M, 0}));
}

// A pagemap of 2 MiB hugetlb pages whose physical address is given per page.
class HugetlbLayout final : public PageInfoReader {
 public:
  explicit HugetlbLayout(std::function<uint64_t(uint64_t)> paddr_of_page)
      : paddr_of_page_(std::move(paddr_of_page)) {}
  Result<void> ReadPagemap(uint64_t first_vpn, std::span<uint64_t> out) override {
    ++reads;
    for (size_t i = 0; i < out.size(); ++i) {
      const uint64_t vaddr = (first_vpn + i) * kPage4K;
      const uint64_t page = (vaddr - kBase) / kPage2M;
      out[i] = kPagemapPresent | ((paddr_of_page_(page) + vaddr % kPage2M) / kPage4K);
    }
    return Ok();
  }
  Result<void> ReadKpageflags(uint64_t, std::span<uint64_t>) override {
    ADD_FAILURE() << "kpageflags read";
    return Ok();
  }
  int reads = 0;

 private:
  std::function<uint64_t(uint64_t)> paddr_of_page_;
};

TEST(ProbeGigaCongruence, FindsAContiguousGigabyteWithTwoReads) {
  HugetlbLayout layout([](uint64_t page) { return 5 * kPage1G + page * kPage2M; });
  auto found = ProbeGigaCongruence(layout, kBase, kPage1G);
  ASSERT_TRUE(found) << found.error().message();
  ASSERT_TRUE(found->has_value());
  EXPECT_EQ(**found, (Congruence{kPage1G, 0}));
  EXPECT_EQ(layout.reads, 2);
}

TEST(ProbeGigaCongruence, FollowsAMisalignedStartToTheNextGigabyteBoundary) {
  // Contiguous, but the first page sits 6 MiB past a 1 GiB boundary.
  HugetlbLayout layout([](uint64_t page) { return 5 * kPage1G + 3 * kPage2M + page * kPage2M; });
  auto found = ProbeGigaCongruence(layout, kBase, 2 * kPage1G);
  ASSERT_TRUE(found) << found.error().message();
  ASSERT_TRUE(found->has_value());
  // iova - vaddr == paddr - vaddr (mod 1 GiB) for the whole range.
  EXPECT_EQ(**found, (Congruence{kPage1G, 3 * kPage2M}));
  EXPECT_EQ(layout.reads, 3);
}

TEST(ProbeGigaCongruence, GivesUpOnScatteredPagesWithinItsReadBudget) {
  // Every page 1 GiB aligned but none next to the previous one.
  HugetlbLayout layout([](uint64_t page) { return (page + 1) * kPage1G; });
  auto found = ProbeGigaCongruence(layout, kBase, 8 * kPage1G);
  ASSERT_TRUE(found) << found.error().message();
  EXPECT_FALSE(found->has_value());
  EXPECT_LE(layout.reads, kGigaProbeReads);
}

TEST(ProbeGigaCongruence, ReadsNothingBelowAGigabyte) {
  HugetlbLayout layout([](uint64_t page) { return page * kPage2M; });
  auto found = ProbeGigaCongruence(layout, kBase, kPage1G - kPage2M);
  ASSERT_TRUE(found);
  EXPECT_FALSE(found->has_value());
  EXPECT_EQ(layout.reads, 0);
}

}  // namespace
}  // namespace vfiod::dma
