// Item 4: IOVA placement. 2 MiB hugetlb memory mapped at a superpage-aligned
// IOVA (the IOMMU can use 2 MiB pages) and at an IOVA 4 KiB off alignment
// (only 4 KiB pages are possible), as vfiod's placement avoids.
#include <cstdio>

#include "common/daemon_process.h"
#include "common/stats.h"
#include "guest/sections.h"

namespace vfiod::bench {

nlohmann::json RunPlacement(const GuestRig& rig, const GuestOptions& options) {
  const uint64_t size = options.sizes.empty() ? vfiod::kPage1G / 4 : options.sizes.front();
  (void)std::fprintf(
      stderr,
      "\n== 4. IOVA placement: %s of 2 MiB hugetlb at an aligned IOVA vs 4 KiB off (avg "
      "of %d interleaved loops)\n",
      SizeName(size).c_str(), options.loops);
  const uint64_t pool_2m = ReadNumber("/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages");
  (void)SetHugepagePool(vfiod::kPage2M, std::max(pool_2m, size / vfiod::kPage2M));
  nlohmann::json out;
  {
    auto buf = MakeAnonBuffer(MemKind::kHugetlb2M, size);
    if (!buf) {
      out = {{"error", buf.error().message()}};
    } else {
      auto both = InterleavedRawLoops(
          rig, {{buf->vaddr(), kRawIova}, {buf->vaddr(), kRawIova + vfiod::kPage4K}}, size,
          options.loops);
      if (!both) {
        out = {{"error", both.error().message()}};
      } else {
        const Loops* aligned = &(*both)[0];
        const Loops* skewed = &(*both)[1];
        const double map_cost = Ratio(Mean(skewed->map_s), Mean(aligned->map_s));
        const double unmap_cost = Ratio(Mean(skewed->unmap_s), Mean(aligned->unmap_s));
        (void)std::fprintf(stderr, "  %-22s MAP %.5f s (%.1f GB/s)  UNMAP %.5f s (%.1f GB/s)\n",
                           "aligned IOVA", Mean(aligned->map_s), GBps(size, Mean(aligned->map_s)),
                           Mean(aligned->unmap_s), GBps(size, Mean(aligned->unmap_s)));
        (void)std::fprintf(stderr, "  %-22s MAP %.5f s (%.1f GB/s)  UNMAP %.5f s (%.1f GB/s)\n",
                           "IOVA + 4 KiB", Mean(skewed->map_s), GBps(size, Mean(skewed->map_s)),
                           Mean(skewed->unmap_s), GBps(size, Mean(skewed->unmap_s)));
        (void)std::fprintf(stderr, "  misaligned / aligned time: map %.2fx  unmap %.2fx\n",
                           map_cost, unmap_cost);
        out = {{"size", size},
               {"aligned",
                {{"map", OpJson(aligned->map_s, size)}, {"unmap", OpJson(aligned->unmap_s, size)}}},
               {"misaligned_4k",
                {{"map", OpJson(skewed->map_s, size)}, {"unmap", OpJson(skewed->unmap_s, size)}}},
               {"slowdown", {{"map", map_cost}, {"unmap", unmap_cost}}}};
      }
    }
  }
  (void)SetHugepagePool(vfiod::kPage2M, pool_2m);
  if (out.contains("error")) {
    (void)std::fprintf(stderr, "  %s\n", out["error"].get<std::string>().c_str());
  }
  out["loops"] = options.loops;
  return out;
}

}  // namespace vfiod::bench
