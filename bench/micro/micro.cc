// vfiod_bench_micro: Google Benchmark micro-benchmarks (item 7) of the DMA
// engine's pure parts at the kernel's limits: the map/unmap planner, the
// IOVA allocator and the shadow map at 65535 mappings (the default
// dma_entry_limit), and the contiguity scanner over 16 GiB of 4 KiB pages
// from a synthetic pagemap.
#include <benchmark/benchmark.h>

#include <cstdio>
#include <cstdlib>
#include <map>
#include <vector>

#include "dma/contiguity.h"
#include "dma/iova_allocator.h"
#include "dma/planner.h"
#include "dma/shadow_map.h"

namespace vfiod::dma {
namespace {

constexpr uint64_t kEntries = 65535;
constexpr uint64_t kVaBase = uint64_t{0x7f} << 40;  // 1 GiB aligned
constexpr uint64_t kIovaBase = uint64_t{1} << 32;
// The test VM's IOMMU: two ranges around the x86 MSI window; 4K, 2M, 1G pages.
const std::vector<kernel::IovaRange> kRanges = {{0, 0xfedfffff}, {0xfef00000, 0x7fffffffff}};
constexpr uint64_t kPgsizes = 0x40201000;

template <class T>
T OrDie(Result<T> r) {
  if (!r) {
    (void)std::fprintf(stderr, "%s\n", r.error().message().c_str());
    std::abort();
  }
  return std::move(*r);
}

// 65535 pages; `gap` true leaves a page of IOVA between neighbours, so none merge.
std::vector<MapRange> Pages(bool gap) {
  std::vector<MapRange> segments;
  for (uint64_t i = 0; i < kEntries; ++i) {
    MapRange s;
    s.vaddr = kVaBase + i * kPage4K;
    s.iova = kIovaBase + i * (gap ? 2 : 1) * kPage4K;
    s.size = kPage4K;
    segments.push_back(s);
  }
  return segments;
}

void BM_PlanMaps(benchmark::State& state) {
  const std::vector<MapRange> segments = Pages(state.range(0) != 0);
  size_t ops = 0;
  // NOLINTNEXTLINE(clang-analyzer-deadcode.DeadStores): Google Benchmark's loop variable
  for (auto _ : state) {
    MapLimits limits;
    limits.dma_avail = 65535;
    auto plan = OrDie(PlanMaps(segments, limits));
    ops = plan.size();
    benchmark::DoNotOptimize(plan.data());
  }
  state.counters["segments"] = static_cast<double>(segments.size());
  state.counters["ioctls"] = static_cast<double>(ops);
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * segments.size()));
}
BENCHMARK(BM_PlanMaps)->ArgName("split")->Arg(1)->Arg(0)->Unit(benchmark::kMillisecond);

// Live: 65535 mappings with gaps. Arg 1: unmap every other one; 0: all of them.
void BM_PlanUnmaps(benchmark::State& state) {
  std::vector<Entry> live;
  std::vector<Entry> gone;
  for (uint64_t i = 0; i < kEntries; ++i) {
    live.push_back({kIovaBase + i * 2 * kPage4K, kPage4K});
    if (state.range(0) == 0 || i % 2 == 0) {
      gone.push_back(live.back());
    }
  }
  size_t ops = 0;
  // NOLINTNEXTLINE(clang-analyzer-deadcode.DeadStores): Google Benchmark's loop variable
  for (auto _ : state) {
    auto plan = OrDie(PlanUnmaps(gone, live, false));
    ops = plan.size();
    benchmark::DoNotOptimize(plan.data());
  }
  state.counters["unmapped"] = static_cast<double>(gone.size());
  state.counters["ioctls"] = static_cast<double>(ops);
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * gone.size()));
}
BENCHMARK(BM_PlanUnmaps)->ArgName("every_other")->Arg(1)->Arg(0)->Unit(benchmark::kMillisecond);

// 65535 allocations of 4 KiB (arg 0) or 2 MiB with 2 MiB congruence (arg 1),
// then all freed, per iteration.
void BM_IovaAllocator(benchmark::State& state) {
  const bool huge = state.range(0) != 0;
  const uint64_t size = huge ? kPage2M : kPage4K;
  std::vector<uint64_t> iovas(kEntries);
  IovaRequest request;
  request.size = size;
  request.congruence_modulus = huge ? kPage2M : 0;
  // NOLINTNEXTLINE(clang-analyzer-deadcode.DeadStores): Google Benchmark's loop variable
  for (auto _ : state) {
    IovaAllocator alloc = OrDie(IovaAllocator::Create(kRanges, kPgsizes));
    for (uint64_t i = 0; i < kEntries; ++i) {
      iovas[i] = OrDie(alloc.Allocate(request));
    }
    for (uint64_t i = 0; i < kEntries; ++i) {
      auto freed = alloc.Free(iovas[i], size);
      benchmark::DoNotOptimize(freed);
    }
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * kEntries * 2));
}
BENCHMARK(BM_IovaAllocator)->ArgName("2M")->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond);

// The engine's shadow map per iteration: 65535 entries inserted (in a
// scattered IOVA order), each looked up by owner as an unmap does (into a
// vector, as the engine's EntriesIn), then each erased. Arg 1 runs the same
// on the std::map<iova, {size, owner}> the shadow used to be, for comparison
// within one run.
void BM_ShadowMap(benchmark::State& state) {
  const bool std_map = state.range(0) != 0;
  std::vector<uint64_t> order(kEntries);
  for (uint64_t i = 0; i < kEntries; ++i) {
    order[i] = kIovaBase + ((i * 40507) % kEntries) * kPage4K;  // a permutation
  }
  struct Value {
    uint64_t size;
    uint32_t owner;
  };
  // NOLINTNEXTLINE(clang-analyzer-deadcode.DeadStores): Google Benchmark's loop variable
  for (auto _ : state) {
    size_t found = 0;
    if (std_map) {
      std::map<uint64_t, Value> shadow;
      for (uint64_t i = 0; i < kEntries; ++i) {
        shadow.emplace(order[i], Value{kPage4K, static_cast<uint32_t>(i + 1)});
      }
      for (uint64_t i = 0; i < kEntries; ++i) {
        std::vector<ShadowEntry> hits;
        for (auto it = shadow.lower_bound(order[i]); it != shadow.end() && it->first <= order[i];
             ++it) {
          if (it->second.owner == i + 1) {
            hits.push_back({it->first, it->second.size, it->second.owner});
          }
        }
        found += hits.size();
      }
      for (uint64_t i = 0; i < kEntries; ++i) {
        shadow.erase(order[i]);
      }
    } else {
      ShadowMap shadow;
      for (uint64_t i = 0; i < kEntries; ++i) {
        shadow.Insert(order[i], kPage4K, static_cast<uint32_t>(i + 1));
      }
      for (uint64_t i = 0; i < kEntries; ++i) {
        found += shadow.In(order[i], order[i], static_cast<uint32_t>(i + 1)).size();
      }
      for (uint64_t i = 0; i < kEntries; ++i) {
        shadow.EraseRange(order[i], kPage4K);
      }
    }
    if (found != kEntries) {
      std::abort();
    }
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * kEntries * 3));
}
BENCHMARK(BM_ShadowMap)->ArgName("std_map")->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond);

// A memory layout: virtual page i of the range is PFN kPfnBase + (i / run) *
// 2 * run + i % run, so physical runs are `run` pages long and never touch.
// With `thp`, every 512-page block is a THP (head + tails) in kpageflags.
class SyntheticReader final : public PageInfoReader {
 public:
  SyntheticReader(uint64_t run, bool thp) : run_(run), thp_(thp) {}
  Result<void> ReadPagemap(uint64_t first_vpn, std::span<uint64_t> out) override {
    ++pagemap_reads_;
    for (size_t k = 0; k < out.size(); ++k) {
      const uint64_t i = first_vpn + k - kVaBase / kPage4K;
      out[k] = kPagemapPresent | (kPfnBase + i / run_ * 2 * run_ + i % run_);
    }
    return Ok();
  }
  Result<void> ReadKpageflags(uint64_t first_pfn, std::span<uint64_t> out) override {
    ++kpageflags_reads_;
    for (size_t k = 0; k < out.size(); ++k) {
      const uint64_t pfn = first_pfn + k;
      out[k] = !thp_ ? 0 : kKpfThp | (pfn % 512 == 0 ? kKpfCompoundHead : kKpfCompoundTail);
    }
    return Ok();
  }
  uint64_t pagemap_reads_ = 0;
  uint64_t kpageflags_reads_ = 0;

 private:
  static constexpr uint64_t kPfnBase = 0x100000;  // 512-aligned
  uint64_t run_;
  bool thp_;
};

// 16 GiB = 4 Mi pages of 4 KiB. Args: physical run length in pages, THP
// layout (1) or plain pages (0), folio size the caller assumes (0 unknown, 4096).
void BM_ScanContiguity16G(benchmark::State& state) {
  constexpr uint64_t kLen = uint64_t{16} << 30;
  SyntheticReader reader(static_cast<uint64_t>(state.range(0)), state.range(1) != 0);
  uint64_t runs = 0;
  uint64_t folios = 0;
  // NOLINTNEXTLINE(clang-analyzer-deadcode.DeadStores): Google Benchmark's loop variable
  for (auto _ : state) {
    auto scan = OrDie(ScanContiguity(reader, kVaBase, kLen, static_cast<uint64_t>(state.range(2))));
    runs = scan.report.run_count;
    folios = scan.report.folios_2m;
    benchmark::DoNotOptimize(scan.runs.data());
  }
  state.counters["pages"] = static_cast<double>(kLen) / kPage4K;
  state.counters["runs"] = static_cast<double>(runs);
  state.counters["folios_2m"] = static_cast<double>(folios);
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * kLen));
}
BENCHMARK(BM_ScanContiguity16G)
    ->ArgNames({"run", "thp", "folio"})
    ->Args({1, 0, 4096})
    ->Args({1, 0, 0})
    ->Args({16, 0, 0})
    ->Args({512, 1, 0})
    ->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace vfiod::dma

BENCHMARK_MAIN();
