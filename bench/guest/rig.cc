#include "guest/rig.h"

#include <linux/mman.h>
#include <sys/mman.h>

#include <filesystem>
#include <fstream>

#include "dma/contiguity.h"
#include "vfio/group.h"
#include "vfioctl/bench_load.h"

namespace vfiod::bench {

const char* MemKindName(MemKind kind) {
  switch (kind) {
    case MemKind::kThp:
      return "MADV_HUGEPAGE";
    case MemKind::kPages4K:
      return "MAP_POPULATE 4K";
    case MemKind::kHugetlb2M:
      return "HUGETLBFS 2M";
    case MemKind::kHugetlb1G:
      return "HUGETLBFS 1G";
  }
  return "?";
}

uint64_t MemKindPage(MemKind kind) {
  switch (kind) {
    case MemKind::kHugetlb2M:
      return vfiod::kPage2M;
    case MemKind::kHugetlb1G:
      return vfiod::kPage1G;
    case MemKind::kThp:
    case MemKind::kPages4K:
      return vfiod::kPage4K;
  }
  return vfiod::kPage4K;
}

Result<Buffer> MakeAnonBuffer(MemKind kind, uint64_t size) {
  int flags = MAP_PRIVATE | MAP_ANONYMOUS;
  uint64_t align = vfiod::kPage2M;
  if (kind == MemKind::kHugetlb2M) {
    flags |= MAP_HUGETLB | MAP_HUGE_2MB;
  } else if (kind == MemKind::kHugetlb1G) {
    flags |= MAP_HUGETLB | MAP_HUGE_1GB;
    align = vfiod::kPage1G;
  }
  Buffer buf;
  buf.memory = VFIOD_TRY(dma::MapAligned(size, align, PROT_READ | PROT_WRITE, flags, -1, 0));
  if (kind == MemKind::kThp || kind == MemKind::kPages4K) {
    // Advised before the first touch: MAP_POPULATE at mmap time would fault
    // before the advice could apply (and make THPs where "always" is set).
    const int advice = kind == MemKind::kThp ? MADV_HUGEPAGE : MADV_NOHUGEPAGE;
    if (::madvise(buf.memory.addr(), size, advice) != 0) {
      return ErrnoError("madvise");
    }
  }
  VFIOD_TRY(dma::PopulateWrite(buf.memory.addr(), size, MemKindPage(kind)));
  return buf;
}

Result<Buffer> MakeMemfdBuffer(MemKind kind, uint64_t size) {
  const uint64_t page = kind == MemKind::kHugetlb2M   ? vfiod::kPage2M
                        : kind == MemKind::kHugetlb1G ? vfiod::kPage1G
                                                      : 0;
  void* view = nullptr;
  Buffer buf;
  buf.fd = VFIOD_TRY(vfioctl::MakeMemfd(size, page, kind == MemKind::kThp, &view));
  buf.memory = dma::MappedMemory(view, size);
  return buf;
}

Result<uint64_t> SetHugepagePool(uint64_t page, uint64_t pages) {
  const std::string path =
      "/sys/kernel/mm/hugepages/hugepages-" + std::to_string(page >> 10) + "kB/nr_hugepages";
  {
    std::ofstream out(path);
    out << pages << '\n';
    if (!out) {
      return ErrnoError("write " + path);
    }
  }
  std::ifstream in(path);
  uint64_t now = 0;
  in >> now;
  return now;
}

double HugeFraction(uint64_t vaddr, uint64_t size) {
  auto reader = dma::ProcPageInfoReader::Open();
  if (!reader) {
    return 0;
  }
  auto scan = dma::ScanContiguity(**reader, vaddr, size, 0);
  if (!scan) {
    return 0;
  }
  const auto& r = scan->report;
  const double huge =
      static_cast<double>(r.folios_2m * vfiod::kPage2M + r.folios_1g * vfiod::kPage1G);
  return std::min(1.0, huge / static_cast<double>(size));
}

Result<int> IommuGroupOf(const std::string& bdf) {
  std::error_code ec;
  auto target = std::filesystem::read_symlink("/sys/bus/pci/devices/" + bdf + "/iommu_group", ec);
  if (ec) {
    return Fail(ENOENT, "iommu group of " + bdf, ec.message());
  }
  return std::stoi(target.filename().string());
}

Result<std::unique_ptr<GuestRig>> GuestRig::Open(const std::string& dma_bdf,
                                                 const std::string& bar_bdf) {
  std::unique_ptr<GuestRig> rig(new GuestRig());
  rig->kernel_ = kernel::MakeLinuxKernel();
  rig->container_ = VFIOD_TRY(vfio::Container::Open(*rig->kernel_));
  const int dma_group = VFIOD_TRY(IommuGroupOf(dma_bdf));
  rig->dma_group_ = VFIOD_TRY(vfio::Group::Open(*rig->kernel_, dma_group));
  VFIOD_TRY(rig->dma_group_->Attach(rig->container_));
  if (!bar_bdf.empty()) {
    const int bar_group = VFIOD_TRY(IommuGroupOf(bar_bdf));
    auto group = VFIOD_TRY(vfio::Group::Open(*rig->kernel_, bar_group));
    VFIOD_TRY(group->Attach(rig->container_));
    rig->bar_device_ = VFIOD_TRY(vfio::Device::Open(group, bar_bdf));
  }
  rig->pgsizes_ = VFIOD_TRY(rig->container_->IommuInfo()).iova_pgsizes;
  return rig;
}

Result<void> GuestRig::Map(uint64_t vaddr, uint64_t iova, uint64_t size) const {
  kernel::DmaMap map;
  map.vaddr = vaddr;
  map.iova = iova;
  map.size = size;
  return container_->Map(map);
}

Result<void> GuestRig::Unmap(uint64_t iova, uint64_t size) const {
  const uint64_t done = VFIOD_TRY(container_->Unmap(iova, size));
  if (done != size) {
    return Fail(EIO, "VFIO_IOMMU_UNMAP_DMA",
                "unmapped " + std::to_string(done) + " of " + std::to_string(size) + " bytes");
  }
  return Ok();
}

}  // namespace vfiod::bench
