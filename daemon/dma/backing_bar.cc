#include "dma/backing_bar.h"

#include "vfio/region.h"

namespace vfiod::dma {

Result<Backing> CreateBarBacking(std::shared_ptr<vfio::Device> device, uint32_t index) {
  if (!device) {
    return Fail(EINVAL, "create BAR backing", "no device");
  }
  vfio::RegionMapping region = VFIOD_TRY(vfio::RegionMapping::Map(std::move(device), index));
  const auto& areas = region.areas();
  if (areas.size() != 1 || areas.front().offset != 0 || areas.front().size != region.size()) {
    return Fail(EINVAL, "create BAR backing",
                "region " + std::to_string(index) +
                    " is only partly mmap-able (sparse areas): it cannot be a DMA target");
  }
  BackingParts parts;
  parts.kind = BackingKind::kBar;
  parts.vaddr = reinterpret_cast<uint64_t>(region.data());
  parts.size = region.size();
  parts.page_size = kPage4K;
  parts.alignment = vfio::NaturalAlignment(region.size());
  parts.mmio = true;
  parts.external = std::make_shared<vfio::RegionMapping>(std::move(region));
  return Backing(std::move(parts));
}

}  // namespace vfiod::dma
