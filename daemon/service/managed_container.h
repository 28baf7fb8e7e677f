// One container as the service runs it: the VFIO container, its groups (each
// opened once by the daemon), the DMA engine's address space, and the device
// fds vfiod handed out from it. All VFIO and DMA work on it is serialized by
// mu(); callers hold it around every call marked "needs mu()".
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "dma/engine.h"
#include "kernel/kernel.h"
#include "proto/result.h"
#include "service/config.h"
#include "service/views.h"
#include "vfio/pci_sysfs.h"

namespace vfiod::vfio {
class Device;
}  // namespace vfiod::vfio

namespace vfiod::service {

/// Extensions a fresh container reports (UPDATE_VADDR shows only after an
/// IOMMU is set, so it reads false here). The container is closed again.
[[nodiscard]] Result<ExtensionsView> ProbeExtensions(kernel::Kernel& kernel);

class ManagedContainer {
 public:
  /// Opens a container, opens and attaches each group (in order), sets the
  /// type1v2 IOMMU and creates the DMA address space. EPERM: a group is not
  /// viable (the detail names the blocking members); EBUSY: a group is in use.
  [[nodiscard]] static Result<std::shared_ptr<ManagedContainer>> Create(
      kernel::Kernel& kernel, const vfio::PciSysfs& sysfs, ContainerId id,
      const std::vector<int>& groups, const Limits& limits);
  ~ManagedContainer();
  ManagedContainer(const ManagedContainer&) = delete;
  ManagedContainer& operator=(const ManagedContainer&) = delete;
  ManagedContainer(ManagedContainer&&) = delete;
  ManagedContainer& operator=(ManagedContainer&&) = delete;

  [[nodiscard]] std::mutex& mu() { return mu_; }
  [[nodiscard]] ContainerId id() const { return id_; }
  [[nodiscard]] const std::vector<int>& groups() const { return group_numbers_; }
  [[nodiscard]] ExtensionsView extensions() const;
  /// The IOMMU info as of the last map/unmap (leaf lock; safe under any lock).
  [[nodiscard]] kernel::IommuInfo iommu_info() const;
  /// True after Close(); needs mu().
  [[nodiscard]] bool closed() const { return closed_; }

  // Everything below needs mu() held.
  [[nodiscard]] Result<MapResult> Alloc(MappingId mapping, const AllocRequest& request,
                                        const ProgressFn& progress);
  [[nodiscard]] Result<MapResult> MapFd(MappingId mapping, MapFdRequest request,
                                        const ProgressFn& progress);
  /// Maps [request.offset, +request.size) of a registered region's backing
  /// (request.fd is unused); the mapping shares the backing.
  [[nodiscard]] Result<MapResult> MapRegion(MappingId mapping,
                                            std::shared_ptr<const dma::Backing> region,
                                            const MapFdRequest& request,
                                            const ProgressFn& progress);
  [[nodiscard]] Result<MapResult> MapBar(MappingId mapping, const MapBarRequest& request);
  /// Unmaps one mapping; reports the bytes unmapped and the ioctls it took.
  /// ENOENT: unknown mapping.
  [[nodiscard]] Result<dma::UnmapReport> Unmap(MappingId mapping);
  /// The contiguity report of a mapping, rescanned (nullopt for MMIO).
  [[nodiscard]] std::optional<dma::ContiguityReport> Contiguity(MappingId mapping);
  /// Opens (or reuses) vfiod's fd for `bdf` and returns a dup for the client.
  [[nodiscard]] Result<OpenedDevice> OpenDevice(const std::string& bdf);
  /// Region and IRQ information of `bdf` (its group must be in this container).
  [[nodiscard]] Result<DeviceVfioView> ProbeDevice(const std::string& bdf);
  /// Releases everything in teardown order: mappings (UNMAP_ALL, or one by
  /// one), device fds, groups detached, the container fd. Reports what was
  /// unmapped. Idempotent.
  dma::UnmapReport Close();

 private:
  struct State;
  explicit ManagedContainer(ContainerId id);
  void RefreshInfo();
  /// Maps `map` chunk by chunk, reporting to `progress` after each one and
  /// abandoning (rolled back, ECANCELED) when it returns false.
  [[nodiscard]] Result<dma::MappingReport> MapInChunks(dma::MapRequest map,
                                                       const ProgressFn& progress);
  /// vfiod's fd of `bdf`, opened from whichever group holds it; needs mu().
  [[nodiscard]] Result<std::shared_ptr<vfio::Device>> DeviceFor(const std::string& bdf);

  const ContainerId id_;
  std::vector<int> group_numbers_;
  std::mutex mu_;
  bool closed_ = false;           // guarded by mu_
  std::unique_ptr<State> state_;  // VFIO and DMA objects; guarded by mu_
  mutable std::mutex info_mu_;    // leaf lock
  kernel::IommuInfo info_;        // guarded by info_mu_
  ExtensionsView extensions_;     // set at creation, then constant
};

}  // namespace vfiod::service
