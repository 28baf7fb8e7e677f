// Item 5: peer BAR mapping. The ivshmem BAR mmap'd at its natural alignment
// (as vfiod's RegionMapping does) vs at an address 4 KiB off it, then mapped
// for DMA at the same aligned IOVA; plus the aligned mmap at an IOVA 4 KiB off.
#include <sys/mman.h>

#include <cstdio>

#include "common/stats.h"
#include "guest/sections.h"
#include "vfio/region.h"

namespace vfiod::bench {
namespace {

constexpr uint32_t kIvshmemBar = 2;
constexpr uint64_t kBarIova = uint64_t{8} << 30;  // 8 GiB: aligned for any BAR up to 8 GiB

// The BAR mmap'd through the kernel seam at natural alignment + `skew`.
class SkewedBar {
 public:
  static Result<SkewedBar> Map(const GuestRig& rig, const kernel::RegionInfo& info, uint64_t skew) {
    const uint64_t align = vfio::NaturalAlignment(info.size);
    kernel::Kernel& k = rig.kernel();
    void* reserve = VFIOD_TRY(
        k.mmap(nullptr, info.size + 2 * align, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    const auto start = reinterpret_cast<uint64_t>(reserve);
    const uint64_t base = (start + align - 1) & ~(align - 1);
    SkewedBar bar(&k, reserve, info.size + 2 * align);
    void* at = VFIOD_TRY(k.mmap(static_cast<char*>(reserve) + (base - start) + skew, info.size,
                                PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED,
                                rig.bar_device()->fd(), static_cast<off_t>(info.offset)));
    bar.at_ = at;
    return bar;
  }
  SkewedBar(SkewedBar&& o) noexcept
      : kernel_(o.kernel_),
        reserve_(std::exchange(o.reserve_, nullptr)),
        len_(o.len_),
        at_(o.at_) {}
  SkewedBar(const SkewedBar&) = delete;
  SkewedBar& operator=(const SkewedBar&) = delete;
  SkewedBar& operator=(SkewedBar&&) = delete;
  ~SkewedBar() {
    if (reserve_ != nullptr) {
      (void)kernel_->munmap(reserve_, len_);
    }
  }
  [[nodiscard]] void* data() const { return at_; }
  [[nodiscard]] uint64_t addr() const { return reinterpret_cast<uint64_t>(at_); }

 private:
  SkewedBar(kernel::Kernel* k, void* reserve, uint64_t len)
      : kernel_(k), reserve_(reserve), len_(len) {}
  kernel::Kernel* kernel_;
  void* reserve_;  // the whole reservation; the BAR mapping lies inside it
  uint64_t len_;
  void* at_ = nullptr;  // the BAR mapping
};

void Print(const char* label, uint64_t vaddr, uint64_t iova, const Loops& l, uint64_t size) {
  (void)std::fprintf(
      stderr, "  %-28s va %#14llx iova %#12llx  MAP %.5f s (%.1f GB/s)  UNMAP %.5f s\n", label,
      static_cast<unsigned long long>(vaddr), static_cast<unsigned long long>(iova), Mean(l.map_s),
      GBps(size, Mean(l.map_s)), Mean(l.unmap_s));
}

nlohmann::json Row(uint64_t vaddr, uint64_t iova, const Loops& l, uint64_t size) {
  return {{"vaddr", vaddr},
          {"iova", iova},
          {"map", OpJson(l.map_s, size)},
          {"unmap", OpJson(l.unmap_s, size)}};
}

Result<nlohmann::json> Measure(const GuestRig& rig, int loops) {
  if (!rig.bar_device()) {
    return Fail(ENODEV, "BAR benchmark", "no ivshmem device");
  }
  auto aligned = VFIOD_TRY(vfio::RegionMapping::Map(rig.bar_device(), kIvshmemBar));
  const uint64_t size = aligned.size();
  const auto va = reinterpret_cast<uint64_t>(aligned.data());
  SkewedBar skewed = VFIOD_TRY(SkewedBar::Map(rig, aligned.info(), vfiod::kPage4K));
  // Fault both CPU mappings in before timing, as a DMA user would have touched them.
  (void)*reinterpret_cast<volatile uint32_t*>(aligned.data());
  (void)*static_cast<volatile uint32_t*>(skewed.data());
  const std::vector<Loops> all = VFIOD_TRY(InterleavedRawLoops(
      rig, {{va, kBarIova}, {skewed.addr(), kBarIova}, {va, kBarIova + vfiod::kPage4K}}, size,
      loops));
  const Loops& a = all[0];
  const Loops& s = all[1];
  const Loops& i = all[2];
  Print("aligned mmap, aligned IOVA", va, kBarIova, a, size);
  Print("mmap 4K off, aligned IOVA", skewed.addr(), kBarIova, s, size);
  Print("aligned mmap, IOVA 4K off", va, kBarIova + vfiod::kPage4K, i, size);
  const double ratio = Ratio(Mean(s.map_s), Mean(a.map_s));
  const double iova_ratio = Ratio(Mean(i.map_s), Mean(a.map_s));
  (void)std::fprintf(stderr, "  unaligned mmap / aligned map time: %.2fx; IOVA 4K off: %.2fx\n",
                     ratio, iova_ratio);
  return nlohmann::json{{"bar_size", size},
                        {"aligned", Row(va, kBarIova, a, size)},
                        {"mmap_4k_off", Row(skewed.addr(), kBarIova, s, size)},
                        {"iova_4k_off", Row(va, kBarIova + vfiod::kPage4K, i, size)},
                        {"unaligned_mmap_slowdown", ratio},
                        {"unaligned_iova_slowdown", iova_ratio}};
}

}  // namespace

nlohmann::json RunBar(const GuestRig& rig, const GuestOptions& options) {
  (void)std::fprintf(stderr, "\n== 5. BAR mapping: ivshmem BAR%u (avg of %d interleaved loops)\n",
                     kIvshmemBar, options.loops);
  auto out = Measure(rig, options.loops);
  if (!out) {
    (void)std::fprintf(stderr, "  %s\n", out.error().message().c_str());
    return {{"error", out.error().message()}};
  }
  (*out)["loops"] = options.loops;
  return *out;
}

}  // namespace vfiod::bench
