// ManagedContainer's VFIO and DMA objects, shared by its source files
// (managed_container*.cc); nothing else includes this.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "dma/engine.h"
#include "service/managed_container.h"
#include "vfio/container.h"
#include "vfio/device.h"
#include "vfio/group.h"
#include "vfio/irq.h"

namespace vfiod::service {

/// The VFIO and DMA objects of one container. Teardown order (members are
/// destroyed in reverse): the request IRQs are disabled and device fds close first, then the DMA
/// space unmaps and releases its backings (BAR backings hold devices), then the groups detach, and
/// the container fd closes last, once nothing refers to it.
struct ManagedContainer::State {
  std::shared_ptr<vfio::Container> container;
  std::vector<std::shared_ptr<vfio::Group>> groups;
  std::unique_ptr<dma::DmaSpace> space;
  // vfiod's view (mmap) of each BAR dma.map_bar mapped, by (BDF, BAR index):
  // made by the first map of that BAR and shared by every later one until
  // the container closes (BarView). Each holds its device, so it goes
  // before (or with) `devices`; the space's mappings share them.
  std::map<std::pair<std::string, uint32_t>, std::shared_ptr<const dma::Backing>> bar_views;
  std::map<std::string, std::shared_ptr<vfio::Device>> devices;  // by BDF
  // The request IRQ armed on each device vfiod opened (by BDF); each holds its
  // device, so it goes before (or with) `devices`.
  std::map<std::string, vfio::IrqSet> requests;
  std::map<uint64_t, ManagedContainer::BarSource> bars;  // BAR mappings, by engine id
};

/// What a container's features mean to clients.
inline ExtensionsView ExtensionsOf(const vfio::ContainerFeatures& f) {
  return ExtensionsView{f.type1v2, f.unmap_all, f.update_vaddr, f.mmio_no_pin};
}

}  // namespace vfiod::service
