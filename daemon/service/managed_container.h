// One container as the service runs it: the VFIO container, its groups (each
// opened once by the daemon), the DMA engine's address space, and the device
// fds vfiod handed out from it. All VFIO and DMA work on it is serialized by
// mu(); callers hold it around every call marked "needs mu()".
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "dma/engine.h"
#include "kernel/kernel.h"
#include "proto/result.h"
#include "proto/unique_fd.h"
#include "service/config.h"
#include "service/stages.h"
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
  /// A container a previous vfiod left, as the fd store kept it (live restart).
  /// The device and region a BAR mapping maps.
  struct BarSource {
    std::string bdf;
    uint32_t index = 0;
  };
  /// A device fd vfiod held in the container (in the store as "d-...").
  struct InheritedDevice {
    std::string bdf;
    int group = 0;
    UniqueFd fd;
  };
  struct Inherited {
    UniqueFd container;
    std::vector<std::pair<int, UniqueFd>> groups;  ///< by group number, as attached
    std::vector<InheritedDevice> devices;
    std::vector<dma::AdoptRequest> mappings;
    /// By AdoptRequest::key: the BARs behind requests that come without a
    /// backing, reopened here (the device through the container's groups).
    std::map<uint64_t, BarSource> bars;
  };
  /// Takes over `inherited` (live restart): the container fd
  /// (vfio::Container::Adopt), each group fd (vfio::Group::Adopt), then the
  /// mappings (dma::DmaSpace::Adopt: each re-pointed at this process with
  /// the VADDR protocol; what does not match the kernel is released; kernel
  /// entries no request names are unmapped). Each inherited device fd is
  /// taken over (vfio::Device::Adopt: not reopened, so not reset; one that
  /// cannot be is closed and logged) before the mappings. A BAR's backing is
  /// made anew (its device taken over or opened through the groups, the
  /// region mmapped); one that
  /// cannot be is released like a mapping whose fd did not come back. The report says what became
  /// of each mapping. Errors (the fds are closed; a group detaches only when the fd store holds no
  /// other copy): those of the three Adopts.
  [[nodiscard]] static Result<std::pair<std::shared_ptr<ManagedContainer>, dma::AdoptReport>> Adopt(
      kernel::Kernel& kernel, ContainerId id, Inherited inherited, const Limits& limits);
  ~ManagedContainer();
  ManagedContainer(const ManagedContainer&) = delete;
  ManagedContainer& operator=(const ManagedContainer&) = delete;
  ManagedContainer(ManagedContainer&&) = delete;
  ManagedContainer& operator=(ManagedContainer&&) = delete;

  [[nodiscard]] std::mutex& mu() { return mu_; }
  [[nodiscard]] ContainerId id() const { return id_; }
  [[nodiscard]] const std::vector<int>& groups() const { return group_numbers_; }
  [[nodiscard]] ExtensionsView extensions() const;
  /// The IOMMU info read when the container was created, with DMA_AVAIL
  /// kept current from the engine's entry count (the kernel's dma_avail is
  /// its entry limit less the entries mapped, and only vfiod maps in its
  /// containers), so no map or unmap pays for a VFIO_IOMMU_GET_INFO.
  /// Leaf lock; safe under any lock.
  [[nodiscard]] kernel::IommuInfo iommu_info() const;
  /// True after Close(); needs mu().
  [[nodiscard]] bool closed() const { return closed_; }
  /// vfiod's VFIO container fd (borrowed), or -1 once closed; needs mu().
  [[nodiscard]] int container_fd() const;

  /// The engine's usage (live mappings, their bytes, the VFIO entries they
  /// use) as of the last map, unmap or close (leaf lock; safe under any lock).
  [[nodiscard]] dma::SpaceUsage usage() const;

  // Everything below needs mu() held. Mappings are named by the DmaSpace's
  // id (MapResult::engine_id); the service keeps its own ids.
  // The map calls time their stages into `stages` when it is not null:
  // kPrepare (the memory's view), kPlan, kIoctl, kBookkeeping (stages.h).
  [[nodiscard]] Result<MapResult> Alloc(const AllocRequest& request, const ProgressFn& progress,
                                        StageClock* stages = nullptr);
  /// Maps [request.offset, +request.size) of a client file's backing (a
  /// registered region or an fd the service adopted), or request.segments of
  /// it (request.fd is unused); the mapping shares the backing.
  [[nodiscard]] Result<MapResult> MapRegion(std::shared_ptr<const dma::Backing> region,
                                            const MapFdRequest& request, const ProgressFn& progress,
                                            StageClock* stages = nullptr);
  /// Maps BAR request.bar of request.bdf (a device of one of its groups,
  /// opened here by its first use) whole, through vfiod's view of it: an
  /// mmap at natural alignment made by the first map of that BAR and kept,
  /// shared by the later ones, until the container closes (BarView). So a
  /// map after the first costs the MAP_DMA alone, which on kernels that map
  /// BARs with huge pfnmaps also finds the view's page tables filled.
  /// Errors of DeviceFor, dma::CreateBarBacking (EINVAL: not mmap-able or
  /// sparse) and the engine's map.
  [[nodiscard]] Result<MapResult> MapBar(const MapBarRequest& request,
                                         StageClock* stages = nullptr);
  /// Unmaps one mapping; reports the bytes unmapped and the ioctls it took.
  /// ENOENT: unknown mapping.
  [[nodiscard]] Result<dma::UnmapReport> Unmap(uint64_t engine_id);
  /// The engine's record of a mapping as a client sees it: every field of
  /// MappingView but id, name, owner_uid (the service's) and contiguity.
  /// ENOENT: no such mapping, or the container is closed.
  [[nodiscard]] Result<MappingView> Describe(uint64_t engine_id) const;
  /// The contiguity report of a mapping, scanned now (nullopt for MMIO or
  /// when the scan fails: the reason is logged).
  [[nodiscard]] std::optional<dma::ContiguityReport> Contiguity(uint64_t engine_id);
  /// The group fds (borrowed), by group number; empty once closed. Needs mu().
  [[nodiscard]] std::vector<std::pair<int, int>> group_fds() const;
  /// What a restart needs of mapping `engine_id` (DmaSpace::KeepableOf).
  /// ENOENT: unknown mapping or closed container.
  [[nodiscard]] Result<dma::DmaSpace::Keepable> Keepable(uint64_t engine_id) const;
  /// The BAR mapping `engine_id` maps (MapBar, or taken over); nullopt for
  /// memory or an unknown mapping. Needs mu().
  [[nodiscard]] std::optional<BarSource> BarOf(uint64_t engine_id) const;
  /// Receives a copy of the request eventfd of each device this container
  /// opens (see SetRequestSink), with the device's BDF.
  using RequestSink = std::function<void(const std::string& bdf, UniqueFd eventfd)>;
  /// From now on, every device vfiod opens in this container (DeviceFor:
  /// device.open, dma.map_bar, device.info, device.reset, a BAR taken over)
  /// gets its request IRQ (VFIO_PCI_REQ_IRQ_INDEX) armed with an eventfd
  /// (vfio::IrqSet, disabled when the device closes), and `sink` a copy of
  /// that eventfd; the devices open already are armed now. A device whose
  /// request IRQ cannot be armed is used anyway (logged: the kernel's
  /// requests for it then go unheard). Needs mu().
  void SetRequestSink(RequestSink sink);
  /// Receives each device fd this container opens from now on (borrowed),
  /// with its BDF, before the device is used: the fd store keeps a copy so
  /// a restarted vfiod takes the device over. Devices open already (taken
  /// over: their fds are in the store) are not passed. Needs mu().
  using DeviceKeeper = std::function<void(const std::string& bdf, int fd)>;
  void SetDeviceKeeper(DeviceKeeper keeper);
  /// A device vfiod holds open in this container, and the group it is in.
  struct HeldDevice {
    std::string bdf;
    int group = 0;
  };
  /// The devices vfiod holds open here, in the order opened (or taken
  /// over); empty once closed or handed over. Leaf lock; safe under any lock.
  [[nodiscard]] std::vector<HeldDevice> held_devices() const;
  /// Opens (or reuses) vfiod's fd for `bdf` and returns a dup for the client,
  /// remembering that `uid` was handed a device fd of `group` (see handouts()).
  [[nodiscard]] Result<OpenedDevice> OpenDevice(const std::string& bdf, int group, uid_t uid);
  /// The groups a device fd was handed out of, with the users it went to.
  /// Such a fd may outlive the container (the service re-checks). Needs mu().
  [[nodiscard]] const std::map<int, std::set<uid_t>>& handouts() const { return handouts_; }
  /// Resets `bdf` (its group must be in this container) the best way the
  /// kernel offers (managed_container_reset.cc): VFIO_DEVICE_RESET when the
  /// device reports it can, else a hot reset of its slot or bus with the
  /// fds of the groups it affects. Needs mu(). ENOTTY: neither exists (a
  /// device without function reset on the root bus); EPERM: the hot reset
  /// would reset a device whose group is not in this container (the detail
  /// names the device and group); the ioctls' errors otherwise.
  [[nodiscard]] Result<ResetMethod> ResetDevice(const std::string& bdf);
  /// Whether vfiod has the device `bdf` open in this container. Needs mu().
  [[nodiscard]] bool HasDeviceOpen(const std::string& bdf) const;
  /// The devices vfiod has open in this container, by BDF. Needs mu().
  [[nodiscard]] std::vector<std::string> OpenDevices() const;
  /// True for a container taken over from a previous vfiod (Adopt); constant.
  [[nodiscard]] bool adopted() const { return adopted_; }
  /// Region and IRQ information of `bdf` (its group must be in this container;
  /// opens the device when vfiod has not yet).
  [[nodiscard]] Result<DeviceVfioView> ProbeDevice(const std::string& bdf);
  /// Graceful hand-over to a successor (SIGTERM with the fd store in use):
  /// invalidates the vaddr of every kernel entry (DmaSpace::InvalidateAll,
  /// so no DMA translation changes and no pin is dropped), then lets go of
  /// the DMA space, device fds, groups and container fd without unmapping or
  /// detaching: the fd store's copies keep them for the successor. The
  /// container is closed after (Close() does nothing more). Returns the bytes
  /// invalidated. ENOTSUP: the kernel lacks VFIO_UPDATE_VADDR (nothing is
  /// touched: the caller closes it as usual); EBUSY: a map is running.
  [[nodiscard]] Result<uint64_t> HandOver();
  /// Releases everything in teardown order: mappings (UNMAP_ALL, or one by
  /// one), device fds, groups detached, the container fd. Reports what was
  /// unmapped. Idempotent.
  dma::UnmapReport Close();

 private:
  struct State;
  explicit ManagedContainer(ContainerId id);
  /// Copies the engine's usage into usage_ (needs mu()): after every map,
  /// unmap and close, so the leaf-locked readers see what the kernel holds.
  void Publish();
  /// vfiod's view of BAR `bar` of `bdf`: the kept one (State::bar_views),
  /// else a new one, kept. Holding a view costs address space only (device
  /// MMIO, nothing pinned, no memory) and the device is held open anyway.
  /// Errors of DeviceFor and dma::CreateBarBacking; nothing is kept then.
  [[nodiscard]] Result<std::shared_ptr<const dma::Backing>> BarView(const std::string& bdf,
                                                                    uint32_t bar);
  /// Maps `map` chunk by chunk, reporting to `progress` after each one and
  /// abandoning (rolled back, ECANCELED) when it returns false (no
  /// `progress`: never). Publishes the new totals. Times kPlan (BeginMap)
  /// and kIoctl (the steps) into `stages` when not null.
  [[nodiscard]] Result<dma::MappingReport> MapInChunks(dma::MapRequest map,
                                                       const ProgressFn& progress,
                                                       StageClock* stages);
  /// Keeps mapping `engine_id` if all of it is in folios of 2 MiB or more
  /// (the request said "require": "thp") and reports the share; else unmaps
  /// it and fails: ENOMEM when some is not huge, the engine's error
  /// (ENOTSUP, ...) when that cannot be told. Needs mu().
  [[nodiscard]] Result<dma::HugeShare> RequireHuge(uint64_t engine_id);
  /// Arms the request IRQ of `device` (see SetRequestSink); needs mu().
  void ArmRequest(const std::string& bdf, const std::shared_ptr<vfio::Device>& device);
  /// vfiod's fd of `bdf`, opened from whichever group holds it (then held,
  /// kept by the keeper and armed: ArmRequest); needs mu().
  [[nodiscard]] Result<std::shared_ptr<vfio::Device>> DeviceFor(const std::string& bdf);
  /// Adds `device` to the devices held (state and held_); needs mu().
  void Hold(const std::string& bdf, const std::shared_ptr<vfio::Device>& device);
  /// Empties held_ (Close, HandOver); needs mu().
  void ForgetHeld();
  /// Takes over one inherited device fd for Adopt (see there); needs mu().
  void AdoptDevice(kernel::Kernel& kernel, InheritedDevice inherited);
  /// A backing of `bar` made anew for Adopt (DeviceFor, then the region
  /// mmapped); nullptr when it cannot be (logged).
  [[nodiscard]] std::shared_ptr<const dma::Backing> ReopenBar(const BarSource& bar);
  /// The client's view of the engine's record `r` (see Describe).
  [[nodiscard]] MappingView ViewOf(const dma::MappingReport& r) const;

  const ContainerId id_;
  std::vector<int> group_numbers_;
  bool adopted_ = false;  // set by Adopt, then constant
  std::mutex mu_;
  bool closed_ = false;                      // guarded by mu_
  std::unique_ptr<State> state_;             // VFIO and DMA objects; guarded by mu_
  std::map<int, std::set<uid_t>> handouts_;  // group -> users given a device fd; mu_
  RequestSink request_sink_;                 // guarded by mu_
  DeviceKeeper device_keeper_;               // guarded by mu_
  mutable std::mutex info_mu_;               // leaf lock
  kernel::IommuInfo info_;        // at creation (DMA_AVAIL then: the limit); guarded by info_mu_
  dma::SpaceUsage usage_;         // published copy of the engine's; guarded by info_mu_
  std::vector<HeldDevice> held_;  // state_->devices' names, in order; guarded by info_mu_
  ExtensionsView extensions_;     // set at creation, then constant
};

}  // namespace vfiod::service
