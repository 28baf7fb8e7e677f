// IovaAllocator: the VM's real IOVA layout (MSI hole), DMA masks, fixed IOVAs,
// superpage congruence, exact frees, 65535 allocations and a brute-force model.
#include "dma/iova_allocator.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cerrno>
#include <limits>
#include <map>
#include <optional>
#include <random>
#include <vector>

namespace vfiod::dma {
namespace {

constexpr uint64_t kMax = std::numeric_limits<uint64_t>::max();
constexpr uint64_t k4K = 0x1000;
constexpr uint64_t k2M = 0x200000;
constexpr uint64_t k1G = 0x40000000;
constexpr uint64_t kVmPgsizes = 0x40201000;  // 4K | 2M | 1G, as the VM reports
const std::vector<kernel::IovaRange> kVmRanges = {{0, 0xfedfffff}, {0xfef00000, 0x7fffffffff}};
constexpr uint64_t kEduMask = (uint64_t{1} << 28) - 1;

IovaAllocator VmAllocator() {
  auto a = IovaAllocator::Create(kVmRanges, kVmPgsizes);
  EXPECT_TRUE(a) << a.error().message();
  return std::move(a).value();
}

IovaRequest Masked(uint64_t size, uint64_t max_iova) {
  IovaRequest r;
  r.size = size;
  r.max_iova = max_iova;
  return r;
}

IovaRequest Sized(uint64_t size) { return Masked(size, kMax); }

IovaRequest Fixed(uint64_t iova, uint64_t size, uint64_t max_iova = kMax) {
  IovaRequest r = Masked(size, max_iova);
  r.fixed_iova = iova;
  return r;
}

IovaRequest Congruent(uint64_t size, uint64_t modulus, uint64_t residue) {
  IovaRequest r = Sized(size);
  r.congruence_modulus = modulus;
  r.congruence_residue = residue;
  return r;
}

TEST(IovaAllocator, CreateRejectsBadInput) {
  EXPECT_EQ(IovaAllocator::Create(kVmRanges, 0).error().code, EINVAL);
  std::vector<kernel::IovaRange> backwards = {{0x2000, 0x1000}};
  EXPECT_EQ(IovaAllocator::Create(backwards, kVmPgsizes).error().code, EINVAL);
  std::vector<kernel::IovaRange> overlap = {{0, 0x1fff}, {0x1000, 0x2fff}};
  EXPECT_EQ(IovaAllocator::Create(overlap, kVmPgsizes).error().code, EINVAL);
}

TEST(IovaAllocator, TrimsRangesToTheGranuleAndJoinsTouchingOnes) {
  std::vector<kernel::IovaRange> ranges = {{0x1800, 0x4fff}, {0x5000, 0x6fff}, {0x8000, 0x8800}};
  auto a = IovaAllocator::Create(ranges, k4K);
  ASSERT_TRUE(a);
  std::vector<kernel::IovaRange> expect = {{0x2000, 0x6fff}};  // 0x8000-0x8800 holds no page
  EXPECT_EQ(a->ranges(), expect);
  EXPECT_EQ(a->free_bytes(), 0x5000u);
}

TEST(IovaAllocator, EmptyRangesMeanTheWhole64BitSpace) {
  auto a = IovaAllocator::Create({}, k4K);
  ASSERT_TRUE(a);
  EXPECT_EQ(a->free_bytes(), kMax);
  auto top = a->Allocate(Fixed(kMax - k4K + 1, k4K));  // the last page of 2^64
  ASSERT_TRUE(top) << top.error().message();
  EXPECT_EQ(a->free_bytes(), kMax - k4K + 1);
  EXPECT_EQ(a->Allocate(Fixed(kMax - k4K + 1, 2 * k4K)).error().code, EINVAL);  // wraps
  EXPECT_TRUE(a->Free(kMax - k4K + 1, k4K));
  EXPECT_EQ(a->free_bytes(), kMax);
}

TEST(IovaAllocator, LowestFirstFitSkipsTheMsiHole) {
  IovaAllocator a = VmAllocator();
  EXPECT_EQ(a.granule(), k4K);
  EXPECT_EQ(a.Allocate(Sized(k4K)).value(), 0u);
  EXPECT_EQ(a.Allocate(Sized(2 * k4K)).value(), k4K);
  // Fill up to the hole, then the next allocation lands above it.
  ASSERT_TRUE(a.Allocate(Fixed(3 * k4K, 0xfee00000 - 3 * k4K)));
  EXPECT_EQ(a.Allocate(Sized(k4K)).value(), 0xfef00000u);
}

TEST(IovaAllocator, ArgumentErrors) {
  IovaAllocator a = VmAllocator();
  EXPECT_EQ(a.Allocate(Sized(0)).error().code, EINVAL);
  EXPECT_EQ(a.Allocate(Sized(k4K + 1)).error().code, EINVAL);
  EXPECT_EQ(a.Allocate(Fixed(0x800, k4K)).error().code, EINVAL);  // misaligned
  IovaRequest odd = Congruent(k4K, 3 * k4K, 0);
  EXPECT_EQ(a.Allocate(odd).error().code, EINVAL);
  IovaRequest bad_residue = Congruent(k4K, k2M, 0x800);
  EXPECT_EQ(a.Allocate(bad_residue).error().code, EINVAL);
  EXPECT_EQ(a.allocation_count(), 0u);
}

TEST(IovaAllocator, FixedIovaOutsideRangesIsEinvalAndTakenIsEexist) {
  IovaAllocator a = VmAllocator();
  EXPECT_EQ(a.Allocate(Fixed(0xfee00000, k4K)).error().code, EINVAL);      // in the MSI hole
  EXPECT_EQ(a.Allocate(Fixed(0xfedff000, 2 * k4K)).error().code, EINVAL);  // reaches into it
  EXPECT_EQ(a.Allocate(Fixed(0x8000000000, k4K)).error().code, EINVAL);    // above the last range
  ASSERT_EQ(a.Allocate(Fixed(0x100000, 0x10000)).value(), 0x100000u);
  auto again = a.Allocate(Fixed(0x100000, k4K));
  EXPECT_EQ(again.error().code, EEXIST);
  EXPECT_NE(again.error().detail.find("0x100000"), std::string::npos);
  EXPECT_EQ(a.Allocate(Fixed(0xff000, 2 * k4K)).error().code, EEXIST);   // overlaps the start
  EXPECT_EQ(a.Allocate(Fixed(0x10f000, 2 * k4K)).error().code, EEXIST);  // overlaps the end
  EXPECT_EQ(a.Allocate(Fixed(0xf0000, 0x30000)).error().code, EEXIST);   // covers it
  EXPECT_EQ(a.Allocate(Fixed(0x110000, k4K)).value(), 0x110000u);        // just after is free
  EXPECT_EQ(a.Allocate(Fixed(0xff000, k4K)).value(), 0xff000u);          // just before too
}

TEST(IovaAllocator, DmaMaskLimitsPlacement) {
  IovaAllocator a = VmAllocator();
  IovaRequest edu = Masked(64 * 1024 * 1024, kEduMask);
  for (int i = 0; i < 4; ++i) {
    auto iova = a.Allocate(edu);
    ASSERT_TRUE(iova) << i;
    EXPECT_LE(*iova + edu.size - 1, kEduMask);
  }
  auto full = a.Allocate(edu);  // 256 MiB below the mask are all taken
  EXPECT_EQ(full.error().code, ENOSPC);
  EXPECT_TRUE(a.Allocate(Sized(edu.size)));  // without the mask there is room
  IovaRequest fixed_above = Fixed(uint64_t{1} << 28, k4K, kEduMask);
  EXPECT_EQ(a.Allocate(fixed_above).error().code, EINVAL);
  IovaRequest too_big = Masked(uint64_t{1} << 29, kEduMask);
  EXPECT_EQ(a.Allocate(too_big).error().code, ENOSPC);
}

TEST(IovaAllocator, SuperpageCongruenceIsHonoured) {
  IovaAllocator a = VmAllocator();
  ASSERT_TRUE(a.Allocate(Sized(k4K)));  // make the lowest free address unaligned
  IovaRequest req = Congruent(4 * k2M, k2M, 0x5000);
  uint64_t iova = a.Allocate(req).value();
  EXPECT_EQ(iova % k2M, 0x5000u);
  IovaRequest giant = Congruent(2 * k1G, k1G, 0);
  uint64_t g = a.Allocate(giant).value();
  EXPECT_EQ(g % k1G, 0u);
  // Residues are taken modulo the modulus.
  IovaRequest wrapped = Congruent(k2M, k2M, k2M + k4K);
  EXPECT_EQ(a.Allocate(wrapped).value() % k2M, k4K);
}

TEST(IovaAllocator, CongruenceFallsBackWhenOnlyAnUnalignedPlaceIsLeft) {
  // One range of 3 MiB starting at 4 KiB: no 2 MiB-congruent 2 MiB block fits
  // with residue 0, but 2 MiB still fits at 4 KiB alignment.
  std::vector<kernel::IovaRange> ranges = {{k4K, k4K + 3 * 0x100000 - 1}};
  auto a = IovaAllocator::Create(ranges, kVmPgsizes);
  ASSERT_TRUE(a);
  IovaRequest req = Congruent(k2M, k2M, 0);
  auto iova = a->Allocate(req);
  ASSERT_TRUE(iova) << iova.error().message();
  EXPECT_EQ(*iova, k4K);
}

TEST(IovaAllocator, FreeRefusesSpaceThatIsNotAllocated) {
  IovaAllocator a = VmAllocator();
  uint64_t iova = a.Allocate(Sized(0x10000)).value();
  EXPECT_EQ(iova, 0u);
  EXPECT_EQ(a.Free(iova + 0x10000, k4K).error().code, ENOENT);     // free space
  EXPECT_EQ(a.Free(iova + 0xf000, 2 * k4K).error().code, ENOENT);  // runs into free space
  EXPECT_EQ(a.Free(iova + 0x800, k4K).error().code, EINVAL);       // misaligned
  EXPECT_EQ(a.Free(iova, 0).error().code, EINVAL);
  EXPECT_EQ(a.Free(0xfee00000, k4K).error().code, EINVAL);  // the MSI window: outside the ranges
  EXPECT_EQ(a.allocation_count(), 1u);
  EXPECT_TRUE(a.Free(iova, 0x10000));
  EXPECT_EQ(a.allocation_count(), 0u);
  EXPECT_EQ(a.Free(iova, 0x10000).error().code, ENOENT);  // a double free
  EXPECT_EQ(a.Free(iova, k4K).error().code, ENOENT);
}

TEST(IovaAllocator, FreeBetweenAllocationsCoalescesWithBothNeighbours) {
  IovaAllocator a = VmAllocator();
  const uint64_t low = a.Allocate(Sized(k4K)).value();
  const uint64_t mid = a.Allocate(Sized(k4K)).value();
  const uint64_t high = a.Allocate(Sized(k4K)).value();
  ASSERT_EQ(mid, low + k4K);
  ASSERT_EQ(high, mid + k4K);
  ASSERT_TRUE(a.Free(low, k4K));
  ASSERT_TRUE(a.Free(high, k4K));
  EXPECT_EQ(a.Free(mid + k4K, k4K).error().code, ENOENT);  // freed already
  ASSERT_TRUE(a.Free(mid, k4K));
  // One hole again from 0: a fixed allocation across all three pages fits.
  EXPECT_EQ(a.Allocate(Fixed(0, 3 * k4K)).value(), 0u);
}

TEST(IovaAllocator, FreeingEverythingRestoresOneWholeRange) {
  IovaAllocator b = VmAllocator();
  uint64_t before = b.free_bytes();
  std::vector<std::pair<uint64_t, uint64_t>> allocs;
  for (int i = 0; i < 100; ++i) {
    uint64_t size = k4K * (1 + i % 7);
    allocs.emplace_back(b.Allocate(Sized(size)).value(), size);
  }
  EXPECT_EQ(b.free_bytes(), before - 395 * k4K);  // 14 x (1+..+7) + 1+2 pages
  std::mt19937 rng(7);
  std::ranges::shuffle(allocs, rng);
  for (auto [iova, size] : allocs) {
    ASSERT_TRUE(b.Free(iova, size));
  }
  EXPECT_EQ(b.free_bytes(), before);
  EXPECT_EQ(b.allocation_count(), 0u);
  // Coalesced: the whole low range is one hole again.
  EXPECT_EQ(b.Allocate(Fixed(0, 0xfee00000)).value(), 0u);
}

TEST(IovaAllocator, Handles65535AllocationsAndFragmentation) {
  IovaAllocator a = VmAllocator();
  constexpr int kCount = 65535;  // the kernel's default dma_entry_limit
  std::vector<uint64_t> iovas;
  iovas.reserve(kCount);
  for (int i = 0; i < kCount; ++i) {
    auto iova = a.Allocate(Sized(k4K));
    ASSERT_TRUE(iova) << i;
    iovas.push_back(*iova);
  }
  EXPECT_EQ(a.allocation_count(), static_cast<size_t>(kCount));
  for (int i = 0; i < kCount; ++i) {
    ASSERT_EQ(iovas[i], static_cast<uint64_t>(i) * k4K);
  }
  // Free every other page: 32768 one-page holes, none fits two pages.
  for (int i = 0; i < kCount; i += 2) {
    ASSERT_TRUE(a.Free(iovas[i], k4K));
  }
  IovaRequest two_low = Masked(2 * k4K, kCount * k4K - 1);
  EXPECT_EQ(a.Allocate(two_low).error().code, ENOSPC);
  EXPECT_EQ(a.Allocate(Sized(2 * k4K)).value(),
            (kCount - 1) * k4K);                  // the top hole, above the mask
  EXPECT_EQ(a.Allocate(Sized(k4K)).value(), 0u);  // the lowest hole
  IovaRequest congruent = Congruent(k4K, k2M, 0x3000);
  EXPECT_EQ(a.Allocate(congruent).value() % k2M, 0x3000u);
}

// Brute force over a small space with holes: first fit (no congruence) must
// pick the lowest free place below the mask; a fixed IOVA must succeed or fail
// with the right code; a congruent request must land on a free place and fail
// only when no place at all is free.
class BruteForce {
 public:
  static constexpr uint64_t kPages = 256;
  explicit BruteForce(std::vector<kernel::IovaRange> ranges) : owner_(kPages, kOutside) {
    for (const kernel::IovaRange& r : ranges) {
      for (uint64_t p = r.start / k4K; p <= r.last / k4K; ++p) {
        owner_[p] = kFree;
      }
    }
  }
  [[nodiscard]] bool Free(uint64_t page, uint64_t pages) const {
    for (uint64_t q = page; q < page + pages; ++q) {
      if (owner_[q] != kFree) {
        return false;
      }
    }
    return true;
  }
  [[nodiscard]] bool Outside(uint64_t page, uint64_t pages) const {
    for (uint64_t q = page; q < page + pages; ++q) {
      if (owner_[q] == kOutside) {
        return true;
      }
    }
    return false;
  }
  /// The lowest free place with page % modulus == residue (in pages).
  [[nodiscard]] std::optional<uint64_t> Lowest(uint64_t pages, uint64_t mask_pages,
                                               uint64_t modulus = 1, uint64_t residue = 0) const {
    for (uint64_t p = residue; p + pages <= mask_pages; p += modulus) {
      if (Free(p, pages)) {
        return p;
      }
    }
    return std::nullopt;
  }
  void Set(uint64_t page, uint64_t pages, int value) {
    for (uint64_t q = page; q < page + pages; ++q) {
      owner_[q] = value;
    }
  }
  static constexpr int kFree = -1;
  static constexpr int kOutside = -2;

 private:
  std::vector<int> owner_;
};

TEST(IovaAllocator, MatchesBruteForce) {
  std::vector<kernel::IovaRange> ranges = {
      {0, 40 * k4K - 1}, {48 * k4K, 200 * k4K - 1}, {210 * k4K, BruteForce::kPages * k4K - 1}};
  auto a = IovaAllocator::Create(ranges, k4K | 4 * k4K | 16 * k4K).value();
  BruteForce model(ranges);
  std::map<uint64_t, uint64_t> live;  // iova -> size
  std::mt19937_64 rng(1234);
  for (int step = 0; step < 20000; ++step) {
    uint64_t kind = rng() % 4;
    bool congruent_possible = false;
    if (!live.empty() && kind == 0) {
      auto it = live.begin();
      std::advance(it, static_cast<long>(rng() % live.size()));
      ASSERT_TRUE(a.Free(it->first, it->second));
      model.Set(it->first / k4K, it->second / k4K, BruteForce::kFree);
      live.erase(it);
      continue;
    }
    uint64_t pages = 1 + rng() % 12;
    uint64_t mask_pages = 16 + rng() % (BruteForce::kPages - 16);
    IovaRequest req = Masked(pages * k4K, mask_pages * k4K - 1);
    std::optional<uint64_t> expect = model.Lowest(pages, mask_pages);
    int expect_code = expect ? 0 : ENOSPC;
    if (kind == 1) {  // fixed
      uint64_t page = rng() % (BruteForce::kPages - pages);
      req.fixed_iova = page * k4K;
      expect = page;
      expect_code = page + pages > mask_pages    ? EINVAL
                    : model.Outside(page, pages) ? EINVAL
                    : !model.Free(page, pages)   ? EEXIST
                                                 : 0;
    } else if (kind == 2) {  // congruent if possible, else any free place
      uint64_t residue = rng() % 16;
      req.congruence_modulus = 16 * k4K;
      req.congruence_residue = residue * k4K;
      congruent_possible = model.Lowest(pages, mask_pages, 16, residue).has_value();
      expect.reset();
    }
    auto got = a.Allocate(req);
    ASSERT_EQ(got ? 0 : got.error().code, expect_code) << "step " << step;
    if (!got) {
      continue;
    }
    if (expect) {
      ASSERT_EQ(*got, *expect * k4K) << "step " << step;
    }
    ASSERT_TRUE(model.Free(*got / k4K, pages)) << "step " << step;
    if (congruent_possible) {
      ASSERT_EQ(*got % (16 * k4K), req.congruence_residue) << "step " << step;
    }
    ASSERT_LE(*got + pages * k4K, mask_pages * k4K) << "step " << step;
    model.Set(*got / k4K, pages, step);
    live[*got] = pages * k4K;
  }
  uint64_t free_pages = 0;
  for (uint64_t p = 0; p < BruteForce::kPages; ++p) {
    free_pages += model.Free(p, 1);
  }
  EXPECT_EQ(a.free_bytes(), free_pages * k4K);
}

}  // namespace
}  // namespace vfiod::dma
