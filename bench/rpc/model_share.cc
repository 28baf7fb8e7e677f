#include "rpc/model_share.h"

#include <malloc.h>
#include <sys/mman.h>
#include <unistd.h>

#include "common/daemon_process.h"
#include "kernel/model_kernel.h"
#include "vfio/container.h"
#include "vfio/group.h"
#include "vfioctl/bench_load.h"

namespace vfiod::bench {
namespace {

constexpr uint64_t kSlice = 4096;
constexpr int kGroup = 3;  // edu's group in VmLikeTopology

struct Heap {
  uint64_t in_use = 0;    // mallinfo2: bytes allocated and not freed
  uint64_t rss_anon = 0;  // /proc/self/status RssAnon
};

Heap ReadHeap() {
  const struct mallinfo2 info = ::mallinfo2();
  return {info.uordblks + info.hblkhd, ProcStatusBytes(::getpid())["RssAnon"]};
}

// Maps the slices on a fresh model container; returns the heap when all are mapped.
Result<std::pair<Heap, Heap>> MapSlices(uint64_t vaddr, uint64_t entries) {
  kernel::ModelKernel model(kernel::VmLikeTopology());
  auto container = VFIOD_TRY(vfio::Container::Open(model));
  auto group = VFIOD_TRY(vfio::Group::Open(model, kGroup));
  VFIOD_TRY(group->Attach(container));
  const Heap before = ReadHeap();
  const uint64_t iova_base = uint64_t{1} << 32;
  for (uint64_t i = 0; i < entries; ++i) {
    VFIOD_TRY(container->Map(
        {.vaddr = vaddr + i * kSlice, .iova = iova_base + i * kSlice, .size = kSlice}));
  }
  return std::pair{before, ReadHeap()};
}

}  // namespace

nlohmann::json MeasureModelShare(uint64_t entries) {
  void* view = nullptr;
  auto fd = vfioctl::MakeMemfd(entries * kSlice, 0, false, &view);
  if (!fd) {
    return {{"error", fd.error().message()}};
  }
  auto heaps = MapSlices(reinterpret_cast<uint64_t>(view), entries);
  ::munmap(view, entries * kSlice);
  if (!heaps) {
    return {{"error", heaps.error().message()}};
  }
  const auto per = [&](uint64_t Heap::*field) {
    return (static_cast<double>(heaps->second.*field) - static_cast<double>(heaps->first.*field)) /
           static_cast<double>(entries);
  };
  return {{"entries", entries},
          {"heap_in_use_per_entry", per(&Heap::in_use)},
          {"rss_anon_per_entry", per(&Heap::rss_anon)}};
}

}  // namespace vfiod::bench
