// The daemon's state and the operations of the API (see proto/openrpc.json),
// independent of the transport: the RPC layer calls these with the caller's
// identity and translates the results to JSON.
//
// Ownership. Every container, mapping and region has an owner uid. A
// container or mapping belongs to the session (connection) that made it and
// is released when that session closes, unless it was given a name: then it
// belongs to its owner's uid and lives until destroyed. Names are per owner
// (two users may both name a container "ring"; container.attach resolves a
// name in one owner's names, the caller's unless told another). A container
// is used only by its owner, by the users and groups its owner shared it with
// (container.create share_with, container.share), who must also be permitted
// every device of it by the policy, and by root.
//
// Authorization. Every method reaches containers, mappings and regions
// through one decision, Authorize() (service_access.cc, where the rules are
// written down); nothing else decides access. An object the caller may not
// see is reported as not found (kNotFound: its existence is not leaked); one
// it may see but not act on as kPermission.
//
// Registered regions (dma.register) belong to their session alone: no name,
// never usable by another session, released when it closes. A mapping made
// from a region holds the region's memory (a shared Backing) until it is
// freed, whether or not the region is still registered.
//
// Locked memory. Every byte vfiod keeps pinned or reserved for a client is
// charged to the client's uid (policy quota locked_bytes; root: unlimited) and
// to the daemon-wide cap limits.max_locked_bytes (root included), both checked
// in ReserveLocked/CheckLockedLocked, refused with kQuota. A mapping charges
// its size while it lives (MMIO: nothing). A registered hugetlbfs region is
// charged its whole size at dma.register, because vfiod holding the file keeps
// its huge pages (reserved at the view's mmap) out of the pool whether or not
// anything is mapped; the charge is a LockedCharges::Hold that lives inside the
// region's shared Backing, so it is given back exactly when vfiod lets go of
// those pages: at dma.unregister or session close, or, when mappings made from
// the region still hold its memory then, when the last of them is freed.
// Mappings made from such a region are "covered": their pages are the
// region's, already charged, so they charge no locked bytes (one mapping
// each, still). A memfd region (4 KiB shmem, swappable until mapped)
// is not charged at dma.register; its mappings charge their size as any map.
//
// Device fds. A device fd vfiod hands out (device.open) may outlive its
// container. When a container is destroyed while such an fd may still be
// open (its group cannot be opened again: EBUSY), the group stays held and
// charged to the users it was handed to ("lingering", shown by status) until
// a re-check (status, container.create, device.unbind) finds it free.
//
// Release requests. Every device vfiod opens has its request IRQ armed; when
// the kernel wants a device back (an unbind, a hot unplug) the release
// watcher's thread hears it, the sessions with a stake in the container
// holding it are told, and after config device.release_grace_seconds the
// container is revoked as by container.destroy (service_release.cc).
//
// One home per mapping. What the kernel holds of a mapping (IOVA, size,
// backing, entries, segments) is the DMA engine's record alone, read under
// its container's mutex (ManagedContainer::Describe); the service keeps an
// ownership index beside it (MappingSlot: container, engine id, owner
// session and uid, the bytes it charged) and the per-uid charges (usage_).
//
// Concurrency. `mu_` guards the registries (sessions_, containers_, mapping slots,
// regions_, groups_held_, lingering_, the usage counters). Each container has its own
// mutex that serializes all VFIO and DMA work on it (the DMA engine is single-threaded
// per container). Lock order: a container's mutex may be held while taking `mu_`,
// never the reverse, so long maps never block registry readers (ping, status).
// No kernel call that may wait (group probes, sysfs writes) runs under `mu_`.
#pragma once

#include <chrono>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "dma/backing.h"
#include "kernel/kernel.h"
#include "lifecycle/state_record.h"
#include "proto/unique_fd.h"
#include "service/config.h"
#include "service/fd_budget.h"
#include "service/locked_charges.h"
#include "service/metrics.h"
#include "service/policy.h"
#include "service/service_error.h"
#include "service/service_slots.h"
#include "service/stats.h"
#include "service/views.h"
#include "vfio/pci_sysfs.h"

namespace vfiod::service {

class ManagedContainer;
class ReleaseWatcher;

/// Who is calling: the session and its peer credentials.
struct Caller {
  SessionId session = 0;
  Identity identity;
  /// Where the DMA paths time their stages (stages.h); owned by the code
  /// running the request (rpc's Invoke), used on that thread only. Null: untimed.
  StageClock* stages = nullptr;
  [[nodiscard]] bool is_root() const { return identity.uid == 0; }
};

/// What a caller wants to do with an object (see Service::Authorize).
enum class Access {
  kSee,     ///< list it, read its info
  kUse,     ///< map into a container, open its devices; map from a region
  kManage,  ///< destroy, share, unshare a container; free a mapping
};

class Service {
 public:
  /// Builds the service over `kernel` (the daemon's kernel seam, owned here).
  /// `sysfs` reads devices (and binds them). Probes the IOMMU extensions.
  Service(Config config, std::unique_ptr<kernel::Kernel> kernel, vfio::PciSysfs sysfs);
  ~Service();
  Service(const Service&) = delete;
  Service& operator=(const Service&) = delete;
  Service(Service&&) = delete;
  Service& operator=(Service&&) = delete;

  // --- sessions -----------------------------------------------------------
  /// Registers a new session for `identity`. Returns its id.
  SessionId OpenSession(const Identity& identity);
  /// Releases everything the session owns, in order: its mappings unmapped,
  /// device fds closed, groups detached, containers closed. Named resources
  /// stay. Waits for work in progress on those containers to finish.
  void CloseSession(SessionId session);
  /// Releases everything (daemon shutdown), named resources included.
  void Shutdown();

  // --- daemon ---------------------------------------------------------------
  /// The daemon's totals (every container, mapping and lingering group).
  [[nodiscard]] StatusView Status() const;
  /// Status as `caller` may see it: root the totals, anyone else the figures
  /// of its own uid (its sessions, containers, mappings, locked bytes, the
  /// lingering groups it holds or owned). Re-checks the lingering groups first.
  [[nodiscard]] StatusView StatusFor(const Caller& caller);
  /// The request and DMA counters `caller` may see (root: the totals; others:
  /// those of its own uid).
  [[nodiscard]] StatsSnapshot StatsFor(const Caller& caller) const;
  /// Status, stats and the users and containers behind them, as one
  /// consistent view (service_metrics.cc) for RenderMetrics: all of them
  /// (nullopt: root's view, the textfile's), or those of `uid` alone (as
  /// StatusFor and StatsFor count them). Does not re-check lingering groups.
  [[nodiscard]] MetricsView MetricsOf(std::optional<uid_t> uid) const;
  /// MetricsOf as `caller` may see it, after re-checking the lingering groups.
  [[nodiscard]] MetricsView MetricsFor(const Caller& caller);
  [[nodiscard]] Stats& stats() { return stats_; }
  [[nodiscard]] const Config& config() const { return config_; }
  /// kPermission when `method` is root-only and the caller is not root.
  [[nodiscard]] SResult<void> CheckMethodAllowed(const Caller& caller,
                                                 const std::string& method) const;
  /// What a restarted vfiod must know that the kernel cannot tell it
  /// (service_snapshot.cc): every live container (containers being created
  /// are left out), every client region whose file is stored (registered,
  /// or kept alive by its slices), every mapping, and each uid's charges,
  /// with the FDNAMEs their fds are stored under ("c-<container id>",
  /// "rg-<region id>", "m-<mapping id>"; none for a BAR or a region's
  /// slice). One consistent view, taken with every container's mutex and
  /// mu_ held (so it waits for maps in progress). `generation` is left 0:
  /// the writer of the fd store stamps it (record_store.h).
  [[nodiscard]] lifecycle::StateRecord SnapshotState() const;
  /// Where the fds a restart needs are kept (the service manager's fd store,
  /// issue 14): `store(name, fd)` is called with each new container's fd
  /// (borrowed) under "c-<id>", each of its group fds under
  /// "g-<container id>-<group>", and each mapping's backing fd (a memfd or
  /// the client's file; none for anonymous memory, a BAR or a slice of a
  /// region) under "m-<mapping id>", and each registered region's file under
  /// "rg-<region id>" (it leaves the store once the region's memory is gone
  /// and a state record says so: RecordStored); after them, before the reply, the object's own
  /// record (lifecycle/object_record.h) under "r-<its name>", so that what a
  /// reply announced survives a crash before the next state record;
  /// `remove(name)` once it is closed or freed, under the container's mutex,
  /// so a store and its removal never swap places; and an own record once a
  /// stored state record describes its object (RecordStored: only one noted
  /// after its store).
  /// `changed()` after every change to containers, mappings, names, sharing
  /// or charges (after the fds are stored, when no lock of the service is
  /// held): the record (SnapshotState) must be written again. `flush()`
  /// (optional) waits until a record taken after every earlier changed() is
  /// stored: the calls whose change no own record carries (sharing, resume)
  /// reply only after it. Failures are the callee's to log: the service goes
  /// on either way.
  /// `capacity`: the most fds the store keeps for vfiod, when the service
  /// manager says ($FDSTORE; 0: it does not): the budget
  /// (limits.max_stored_fds) is lowered to fit it with the two state records.
  struct FdStoreHooks {
    std::function<void(const std::string& name, int fd)> store;
    std::function<void(const std::string& name)> remove;
    std::function<void()> changed;
    std::function<void()> flush;
    uint64_t capacity = 0;
  };
  /// Set once, before the first session opens; unset, nothing is stored (and
  /// nothing is charged to the fd store's budget).
  void SetFdStoreHooks(FdStoreHooks hooks);
  /// Whether what vfiod holds goes to an fd store (StatusView::fd_store).
  [[nodiscard]] bool has_fd_store() const { return static_cast<bool>(fd_store_.store); }
  /// `record` (a SnapshotState, stamped) is in the store now: the own records
  /// of the objects it describes leave the store. Called by the record
  /// writer's thread after each successful store; takes no lock but a leaf.
  void RecordStored(const lifecycle::StateRecord& record);
  /// Own records a previous vfiod stored (by name, "r-c-<id>" / "r-m-<id>")
  /// whose objects Readopt took over: they leave the store with the first
  /// state record stored that describes their objects, as this vfiod's own.
  void KeepObjectRecords(const std::vector<std::string>& names);

  // --- release requests (service_release.cc) -------------------------------
  /// Tells session `session` about a release (device.release_requested,
  /// device.revoked). Called on the release watcher's thread with no lock of
  /// the service held; must not block for long (it queues a line).
  using ReleaseNotifier = std::function<void(SessionId session, const ReleaseNotice& notice)>;
  /// Sets (or, empty, clears) the notifier; it is not called once this
  /// returns. Unset, releases still happen but nobody is told.
  void SetReleaseNotifier(ReleaseNotifier notifier) {
    std::lock_guard lock(notify_mu_);
    notify_release_ = std::move(notifier);
  }
  /// Request eventfds the release watcher holds (a test's leak check).
  [[nodiscard]] size_t WatchedRequests() const;

  // --- live restart (service_restart.cc) -----------------------------------
  /// The resume token of `session`: lifecycle::kSessionTokenLength random
  /// lowercase hex digits, what its client passes to ResumeSession after a
  /// restart of vfiod. Empty for an unknown session.
  [[nodiscard]] std::string SessionToken(SessionId session) const;
  /// What ResumeSession took back.
  struct Resumed {
    uint64_t containers = 0;
    uint64_t mappings = 0;
    uint64_t regions = 0;
  };
  /// Moves what the detached session with `token` owns (the unnamed
  /// containers and mappings a restart kept for it) to the caller's session,
  /// and ends the detached session. kNotFound: no detached session has this
  /// token, or it is another uid's (the two are not told apart).
  [[nodiscard]] SResult<Resumed> ResumeSession(const Caller& caller, const std::string& token);
  /// Closes (CloseSession) every detached session whose grace period is
  /// over. Returns when the next one ends; nullopt when none is left.
  std::optional<std::chrono::steady_clock::time_point> ReleaseExpiredSessions();
  /// What Readopt took over and what it let go.
  struct ReadoptReport {
    uint64_t containers = 0;           ///< taken over
    uint64_t mappings = 0;             ///< taken over, at their IOVAs
    uint64_t released_containers = 0;  ///< described but not taken over (logged)
    uint64_t released_mappings = 0;    ///< described but not taken over (logged)
    uint64_t stray_bytes = 0;          ///< kernel entries no record named, unmapped
    uint64_t detached_sessions = 0;    ///< waiting for ResumeSession
    uint64_t regions = 0;              ///< client regions taken over (registered or not)
    uint64_t released_regions = 0;     ///< described but not taken over (logged)
  };
  /// Rebuilds the tables from a previous vfiod's `record` and the fds it
  /// stored (by FDNAME: "c-<id>", "g-<id>-<group>", "m-<id>", "rg-<id>");
  /// the fds it takes leave `fds`, the rest are the caller's to drop. Client
  /// regions come first (registered ones to their detached sessions, charged
  /// as before), then every container
  /// is taken over (ManagedContainer::Adopt) with its id, name, owner,
  /// sharing and groups; every mapping with its id, IOVA, name and owner,
  /// re-pointed at this process without a moment in which device DMA
  /// faults. What does not match the kernel, or whose fds did not come back,
  /// is released and logged (its fds removed from the store), never trusted.
  /// Each uid is charged what it holds now (a difference from the record's
  /// figures is logged). The unnamed objects of each old session go to a
  /// detached session (same token and uid) that ResumeSession claims and
  /// ReleaseExpiredSessions ends after `grace`. Call once, after
  /// SetFdStoreHooks and before the first session opens.
  ReadoptReport Readopt(const lifecycle::StateRecord& record, std::map<std::string, UniqueFd>& fds,
                        std::chrono::seconds grace);
  /// Graceful exit with the fd store in use: every container is handed over
  /// (ManagedContainer::HandOver: vaddrs invalidated, nothing unmapped or
  /// detached) and the tables are emptied without removing anything from the
  /// store or noting a change. A container that cannot be handed over is
  /// released as by Shutdown (and leaves the store). Returns the number
  /// handed over. The service then holds nothing.
  size_t HandOver();

  // --- devices --------------------------------------------------------------
  [[nodiscard]] SResult<std::vector<DeviceView>> ListDevices(const Caller& caller);
  /// The sysfs facts of a device and its config space (read from sysfs; no
  /// VFIO open). The VFIO regions and IRQs only when a container the caller
  /// may use holds the device's group. kNotFound: no such device (or the BDF
  /// is malformed: kInvalidParams).
  [[nodiscard]] SResult<DeviceView> DeviceInfo(const Caller& caller, const std::string& bdf);
  /// kPermission unless root or may_bind; kBusy when the device's group is in use.
  [[nodiscard]] SResult<DeviceView> BindDevice(const Caller& caller, const std::string& bdf);
  /// Unbinds the device (vfio-pci: back to its native driver). Refused at once,
  /// never blocking in the kernel: kBusy when its group is in a container, or
  /// held by a device fd vfiod handed out (the detail names the holder), or
  /// cannot be opened (someone else holds a device fd). kPermission as BindDevice.
  [[nodiscard]] SResult<DeviceView> UnbindDevice(const Caller& caller, const std::string& bdf);
  /// The device's group must be in the container. kNotFound for an unknown
  /// container or device, kPermission when the policy does not allow it.
  [[nodiscard]] SResult<OpenedDevice> OpenDevice(const Caller& caller, ContainerId container,
                                                 const std::string& bdf);
  /// Resets the device (service_devices_reset.cc) through the container that
  /// holds its group, with the same access rule as OpenDevice (Authorize
  /// kUse). Returns how (ManagedContainer::ResetDevice). kNotFound: no such
  /// device, or its group is in no container the caller may use;
  /// kPermission: the policy refuses the device, or a hot reset would reset
  /// a device whose group is not in that container (named in the detail);
  /// kInvalidParams (ENOTTY): the kernel offers no reset for it; kKernel.
  [[nodiscard]] SResult<ResetMethod> ResetDevice(const Caller& caller, const std::string& bdf);

  // --- containers -----------------------------------------------------------
  /// The most devices one container.create may name (each costs a read of
  /// its sysfs record before anything else is checked).
  static constexpr size_t kMaxContainerDevices = 64;
  /// Opens a type1v2 container with the groups of `bdfs` attached, owned by
  /// the caller and shared with `share`. kInvalidParams: no device, more than
  /// kMaxContainerDevices, or a device named twice (in any spelling of its
  /// address). kQuota, kPermission, kNotFound, kBusy (group in use or held
  /// by a lingering device fd; the caller's own name taken), kKernel.
  [[nodiscard]] SResult<ContainerView> CreateContainer(const Caller& caller,
                                                       const std::vector<std::string>& bdfs,
                                                       const std::string& name,
                                                       const ShareList& share = {});
  /// The container `owner` (default: the caller) named `name`, when the
  /// caller may use it (Authorize kUse: owner, shared with and permitted
  /// every device, or root). kNotFound: no such name of that owner visible
  /// to the caller; kPermission: shared, but a device is not permitted.
  [[nodiscard]] SResult<ContainerView> AttachContainer(const Caller& caller,
                                                       const std::string& name,
                                                       std::optional<uid_t> owner = std::nullopt);
  /// Adds (`share` true) or removes the users and groups of `who` to the
  /// container's share list. Owner or root only (kPermission for a user it is
  /// shared with, kNotFound for others). kQuota (EDQUOT), nothing added: the
  /// list would hold more than ShareList::kMaxEntries users or groups.
  /// Existing mappings stay.
  [[nodiscard]] SResult<ContainerView> ShareContainer(const Caller& caller, ContainerId container,
                                                      const ShareList& who, bool share);
  [[nodiscard]] std::vector<ContainerView> ListContainers(const Caller& caller) const;
  /// The container and its mappings.
  [[nodiscard]] SResult<std::pair<ContainerView, std::vector<MappingView>>> ContainerInfo(
      const Caller& caller, ContainerId container);
  /// Unmaps everything, detaches the groups, closes it. Returns bytes unmapped.
  [[nodiscard]] SResult<uint64_t> DestroyContainer(const Caller& caller, ContainerId container);

  // --- DMA ------------------------------------------------------------------
  // The three map calls share one contract (RunMap).
  // - Success: the mapping is in the kernel (every chunk mapped) and in the
  //   tables, owned by the caller (unnamed: by its session, freed when the
  //   session ends; named: until dma.free), charged to the caller's quota
  //   (its size in locked bytes, except a BAR's or a charged region's slice;
  //   one mapping) and kStoredFdsPerMapping of the fd store's budget, and,
  //   with an fd store, its memory's fd and own record are in the store
  //   before the call returns, so a crash right after it loses nothing.
  // - Failure: nothing is left: no kernel entry (a partial map is rolled
  //   back), no pin, no charge, no fd kept. Errors common to the three:
  //   kNotFound (ENOENT) no such container usable by the caller, or it was
  //   destroyed while the call waited for it; (ECONNRESET) the session ended
  //   during the map; kQuota (EDQUOT) the caller's locked_bytes or mappings
  //   quota, limits.max_locked_bytes, limits.max_stored_fds or the caller's
  //   share of it; kInvalidParams (EINVAL) a size of 0. What the dma layer
  //   refuses comes as kKernel with its errno: EINVAL a placement the
  //   container cannot give (alignment, an IOVA outside its ranges), EEXIST
  //   an IOVA in use, ENOSPC no IOVA space or too few DMA entries left
  //   (vfio_iommu_type1's dma_entry_limit), ENOMEM too few huge pages, or
  //   the failed ioctl's own errno.
  // `progress` is called after each chunk, on the calling thread.

  /// Allocates and maps vfiod's own memory. Without request.numa_node, on
  /// the node of the container's devices (DevicesNode), preferred, not bound.
  /// kInvalidParams (EINVAL): numa_node names a node that is not online;
  /// kKernel: the allocation failed (ENOMEM: no huge pages of that size).
  [[nodiscard]] SResult<MapResult> Alloc(const Caller& caller, AllocRequest request,
                                         const ProgressFn& progress);
  /// Maps a registered region's or a client fd's memory. kNotFound: no such
  /// region in the caller's session; kBadFd: the fd cannot be adopted
  /// (AdoptClientFd's errors: EBADF, EINVAL wrong file, misaligned, too
  /// short; EPERM sealing locked); kInvalidParams: the range or a segment
  /// is outside the region or the file.
  [[nodiscard]] SResult<MapResult> MapFd(const Caller& caller, MapFdRequest request,
                                         const ProgressFn& progress);
  /// Maps a device BAR (peer to peer, nothing pinned or charged in locked
  /// bytes). kInvalidParams: a malformed PCI address, not an implemented
  /// memory BAR, or the device's group is not in the container; kNotFound
  /// (ENODEV): no such device; kPermission: the policy does not grant the
  /// device to the caller.
  [[nodiscard]] SResult<MapResult> MapBar(const Caller& caller, const MapBarRequest& request);
  /// The caller's mappings, optionally of one container.
  [[nodiscard]] SResult<std::vector<MappingView>> ListMappings(
      const Caller& caller, std::optional<ContainerId> container) const;
  [[nodiscard]] SResult<MappingView> MappingInfo(const Caller& caller, MappingId mapping);
  /// Returns bytes unmapped.
  [[nodiscard]] SResult<uint64_t> FreeMapping(const Caller& caller, MappingId mapping);

  // --- registered regions ---------------------------------------------------
  /// Adopts the client's memfd / hugetlbfs file (dma::AdoptClientFd: checks,
  /// F_SEAL_SHRINK, vfiod's own view) as a region of the caller's session.
  /// A hugetlbfs region is charged its size in locked bytes until its memory
  /// is released (see "Locked memory" above).
  /// kQuota: the session has limits.max_regions regions, or a hugetlbfs
  /// region does not fit the caller's locked_bytes quota or the daemon-wide
  /// cap (limits.max_locked_bytes), or its file does not fit the fd store's
  /// budget or the caller's share of it (limits.max_stored_fds,
  /// max_stored_fds_per_user); kInvalidParams:
  /// offset past the end of the file; kBadFd: AdoptClientFd's errors (EBADF,
  /// EINVAL wrong file, misaligned, too short; EPERM sealing locked).
  [[nodiscard]] SResult<RegionView> RegisterRegion(const Caller& caller, RegisterRequest request);
  /// Drops the session's handle on `region`; its mappings stay valid until
  /// freed. kNotFound: no such region in the caller's session.
  [[nodiscard]] SResult<void> UnregisterRegion(const Caller& caller, RegionId region);
  /// The caller's session's regions, by id.
  [[nodiscard]] std::vector<RegionView> ListRegions(const Caller& caller) const;

 private:
  // The registries' records (service_slots.h).
  using Session = slots::Session;
  using RegionSlot = slots::RegionSlot;
  using ContainerSlot = slots::ContainerSlot;
  using ReleaseSlot = slots::ReleaseSlot;
  using LingeringSlot = slots::LingeringSlot;
  using MappingSlot = slots::MappingSlot;
  using MappingRef = slots::MappingRef;
  using Usage = slots::Usage;
  using StoredRegion = slots::StoredRegion;

  // --- authorization (service_access.cc); all require mu_ held -------------
  /// THE access decision: may `caller` do `access` to the container? Ok, or
  /// kNotFound (may not see it; `op` names the request) or kPermission.
  [[nodiscard]] SResult<void> Authorize(const Caller& caller, const ContainerSlot& slot,
                                        Access access, const char* op) const;
  /// The same decision for a mapping (its container's rules, and its owner).
  [[nodiscard]] SResult<void> Authorize(const Caller& caller, const MappingSlot& slot,
                                        Access access, const char* op) const;
  /// The same decision for a region (its session's alone; root may see it).
  [[nodiscard]] SResult<void> Authorize(const Caller& caller, const RegionSlot& slot, Access access,
                                        const char* op) const;
  /// The container `id` after Authorize (kNotFound when there is none).
  [[nodiscard]] SResult<ContainerSlot*> ContainerForLocked(const Caller& caller, ContainerId id,
                                                           Access access, const char* op);
  /// The container's ManagedContainer after Authorize.
  [[nodiscard]] SResult<std::shared_ptr<ManagedContainer>> FindContainerLocked(const Caller& caller,
                                                                               ContainerId id,
                                                                               Access access,
                                                                               const char* op);
  /// The live mapping `id` after Authorize (kNotFound when there is none).
  [[nodiscard]] SResult<const MappingSlot*> MappingForLocked(const Caller& caller, MappingId id,
                                                             Access access, const char* op) const;
  /// Whether the caller is the container's owner (its session for an unnamed
  /// one, its uid for a named one); used by Authorize only.
  [[nodiscard]] static bool OwnsLocked(const Caller& caller, const ContainerSlot& slot);
  /// Whether the container is shared with the caller's uid or one of its groups.
  [[nodiscard]] static bool SharedWithLocked(const Caller& caller, const ContainerSlot& slot);

  // Registry helpers; all require mu_ held.
  [[nodiscard]] SResult<void> ReserveLocked(const Caller& caller, uint64_t bytes, uint64_t mappings,
                                            uint64_t containers);
  /// kQuota unless `bytes` more locked bytes fit the caller's quota and the
  /// daemon-wide cap (limits.max_locked_bytes). Charges nothing.
  [[nodiscard]] SResult<void> CheckLockedLocked(const Caller& caller, uint64_t bytes) const;
  /// Locked bytes charged to everyone: reservations, mappings, held regions.
  [[nodiscard]] uint64_t TotalLockedLocked() const;
  void UnreserveLocked(uid_t uid, uint64_t bytes, uint64_t mappings, uint64_t containers);
  [[nodiscard]] ContainerView ViewLocked(const ContainerSlot& slot) const;
  /// The live slot of mapping `id`, or null.
  [[nodiscard]] const MappingSlot* FindMappingLocked(MappingId id) const;
  /// Indexes a new mapping (its quota, `charged` locked bytes and one
  /// mapping, already charged to `slot.owner_uid`); returns its id.
  MappingId AddMappingLocked(const MappingSlot& slot, const std::string& name);
  /// Forgets mapping `id`: gives back its charges, frees its slot. When no
  /// mapping is left, the slots' memory is given back too.
  void RemoveMappingLocked(MappingId id);
  /// Drops every (free) slot, keeping the ids unique: see mapping_generation_floor_.
  void ReleaseMappingSlotsLocked();
  /// The index entry of live mapping `id`, to describe it off mu_.
  [[nodiscard]] MappingRef RefLocked(MappingId id, const MappingSlot& slot) const;
  /// The view of a mapping: the engine's record with the index's id, owner
  /// and name. Needs its container's mutex (not mu_). ENOENT: freed meanwhile.
  [[nodiscard]] static Result<MappingView> Describe(const MappingRef& ref);
  /// Describe for each of `refs`, each under its container's mutex in turn;
  /// no lock held on entry. By id; mappings freed meanwhile are left out.
  [[nodiscard]] static std::vector<MappingView> DescribeAll(const std::vector<MappingRef>& refs);
  /// Calls `fn(id, slot)` for every live mapping, in slot order.
  template <class Fn>
  void ForEachMappingLocked(Fn fn) const {
    for (size_t i = 0; i < mapping_slots_.size(); ++i) {
      if (mapping_slots_[i].container != 0) {
        fn(IdOfSlot(i), mapping_slots_[i]);
      }
    }
  }
  [[nodiscard]] MappingId IdOfSlot(size_t index) const {
    return (uint64_t{mapping_slots_[index].generation} << 32) | (index + 1);
  }
  /// The caller's visible mappings (of `container` when set), by id.
  [[nodiscard]] std::vector<MappingRef> VisibleMappingsLocked(
      const Caller& caller, std::optional<ContainerId> container) const;

  /// Runs one map on container `id`: checks access, reserves the quota
  /// (`pinned_bytes`, one mapping), runs `work` under the container's mutex and
  /// records the mapping, or undoes the reservation when `work` fails.
  /// `covered`: the memory is a charged region's (pass 0 pinned_bytes).
  using MapWork = std::function<SResult<MapResult>(ManagedContainer&)>;
  /// `region`: the region it maps a slice of (0: none).
  [[nodiscard]] SResult<MapResult> RunMap(const Caller& caller, ContainerId id,
                                          uint64_t pinned_bytes, const std::string& name,
                                          const MapWork& work, bool covered = false,
                                          RegionId region = 0);
  /// Charges an adopted region's hugetlb pages (kQuota when over the quota or
  /// the cap) and moves it into a shared Backing that carries the charge; a
  /// memfd region is moved in uncharged. `adopted` is left alone on failure,
  /// so the caller can release it outside mu_.
  [[nodiscard]] SResult<std::shared_ptr<const dma::Backing>> ChargeRegionLocked(
      const Caller& caller, dma::Backing& adopted);
  /// `adopted` moved into a shared Backing that carries a charge of its size
  /// to `uid` (given back once the last user of the memory lets it go).
  [[nodiscard]] std::shared_ptr<const dma::Backing> HoldRegion(uid_t uid, dma::Backing adopted);
  /// Whether dma.register charges a region of this memory: hugetlbfs pages.
  [[nodiscard]] static bool IsChargedRegion(const dma::Backing& region) {
    return region.page_size() > vfiod::kPage4K;
  }
  /// The backing of the caller's session's region `id` (kNotFound otherwise).
  [[nodiscard]] SResult<std::shared_ptr<const dma::Backing>> FindRegionLocked(const Caller& caller,
                                                                              RegionId id,
                                                                              const char* op) const;
  /// Resolves a map_fd request's size (0: the rest of the file or region) and
  /// checks its range against the region. Returns the backing for a region.
  [[nodiscard]] SResult<std::shared_ptr<const dma::Backing>> ResolveMapFd(const Caller& caller,
                                                                          MapFdRequest& request);
  /// Wraps `progress` so an unnamed map is abandoned once its session closed.
  [[nodiscard]] ProgressFn WatchSession(const Caller& caller, const std::string& name,
                                        const ProgressFn& progress);
  /// Empties the tables (sessions, detached ones, regions, containers) and
  /// returns the live containers, for Shutdown and HandOver to let go of.
  std::vector<ContainerSlot> TakeEverything();
  /// The NUMA node every device of the container's groups sits on (sysfs
  /// numa_node), when they share one and it is online; else -1 (no such
  /// container, devices on several nodes or none, a one-node kernel). Reads
  /// sysfs off mu_, once per container (ContainerSlot::devices_node).
  [[nodiscard]] int DevicesNode(ContainerId container);
  /// Tears down a container already removed from containers_ (takes its
  /// mutex, so waits for work in progress); forgets its mappings and groups.
  /// Groups a device fd was handed out of stay held as lingering until a
  /// re-check (done here at once) finds them free.
  uint64_t Teardown(const ContainerSlot& slot);
  /// Probes every lingering group (off mu_) and releases those that are free
  /// again: their groups leave groups_held_, their holders are refunded.
  void RecheckLingering();
  /// Whether something still holds `group` open: opening it fails with
  /// EBUSY (a device fd holds the group file). Never blocks; no lock held.
  [[nodiscard]] bool GroupStillHeld(int group);
  /// "uid 1000 (container 5, destroyed)": who holds `group`, when vfiod knows
  /// it holds it; nullopt when it is free. Needs mu_.
  [[nodiscard]] std::optional<std::string> GroupHolderLocked(int group) const;
  // Readopt's steps (service_restart.cc).
  /// Takes over the container `c` describes with its mappings `mine`,
  /// taking their fds out of `fds`; what it cannot take over is released,
  /// logged and counted, and its fds leave the store. A slice of a region
  /// shares that region's memory from `regions` (ReadoptRegions).
  void ReadoptContainer(const lifecycle::ContainerRecord& c,
                        const std::vector<const lifecycle::MappingRecord*>& mine,
                        const std::map<RegionId, std::shared_ptr<const dma::Backing>>& regions,
                        std::map<std::string, UniqueFd>& fds, ReadoptReport& report);
  /// The detached session of old token `token` and `uid`, made on first use.
  SessionId DetachedSessionLocked(const std::string& token, uid_t uid,
                                  std::chrono::steady_clock::time_point expires);
  /// Indexes adopted mapping `id` at its own slot and generation (its
  /// charges already made). Slots it skips are left free for
  /// RebuildFreeMappingSlotsLocked.
  void AddMappingAtLocked(MappingId id, const MappingSlot& slot, const std::string& name);
  /// Forgets every mapping of `container` (RemoveMappingLocked: charges
  /// given back); returns their ids.
  std::vector<MappingId> ForgetMappingsLocked(ContainerId container);
  /// The free list from the slots (after AddMappingAtLocked).
  void RebuildFreeMappingSlotsLocked();
  /// The daemon's figures: all of them (nullopt) or those of `uid` alone.
  [[nodiscard]] StatusView StatusOf(std::optional<uid_t> uid) const;
  /// The figures of StatusOf that need no lock (version, kernel, uptime...).
  [[nodiscard]] StatusView StatusHeader() const;
  /// Adds StatusOf's counted figures to `s`; needs mu_.
  void FillStatusLocked(StatusView& s, std::optional<uid_t> uid) const;
  /// The lingering containers, all (nullopt) or those `uid` holds or owned.
  [[nodiscard]] std::vector<LingeringView> LingeringViewsLocked(std::optional<uid_t> uid) const;
  /// The device `bdf` names (kInvalidParams: malformed; kNotFound: absent).
  [[nodiscard]] SResult<vfio::PciDevice> LookupDevice(const std::string& bdf) const;
  /// LookupDevice, then the policy's MayUseDevice (kPermission).
  [[nodiscard]] SResult<vfio::PciDevice> FindDevice(const Caller& caller,
                                                    const std::string& bdf) const;
  /// FindDevice for a dma.map_bar in `container`: the facts a previous
  /// dma.map_bar there kept (ContainerSlot::bar_devices; no sysfs read) when
  /// it has them, else read; the policy's MayUseDevice is asked either way.
  /// Errors as FindDevice. Takes mu_ (not held).
  [[nodiscard]] SResult<vfio::PciDevice> BarDevice(const Caller& caller, ContainerId container,
                                                   const std::string& bdf) const;
  // Release requests (service_release.cc).
  /// Hands the request eventfds of the devices `managed` opens to the
  /// release watcher (ManagedContainer::SetRequestSink); takes its mutex.
  void WatchRequests(ManagedContainer& managed);
  /// The watcher heard the kernel ask for `bdf` of `container`: unless a
  /// release of it is under way already, notes it, tells the stakeholders
  /// (device.release_requested) and revokes the container after the grace
  /// period (device.release_grace_seconds; 0: now). No lock held.
  void OnReleaseRequested(ContainerId container, const std::string& bdf);
  /// The grace period of `container` is over: unless it is gone already,
  /// it is torn down as by container.destroy (Teardown: every mapping
  /// unmapped, vfiod's device and group fds closed, the groups lingering
  /// while a client still holds a device fd) and the stakeholders are told
  /// (device.revoked). No lock held.
  void RevokeForRelease(ContainerId container);
  /// Who has a stake in `slot`: its creating session, the sessions handed a
  /// device fd out of it, and the sessions owning mappings in it (those
  /// still open, not detached). Needs mu_.
  [[nodiscard]] std::set<SessionId> StakeholdersLocked(const ContainerSlot& slot) const;
  /// Calls the notifier (if set) for each of `sessions`; no lock held.
  void TellRelease(const std::set<SessionId>& sessions, ReleaseNotice notice,
                   const std::map<SessionId, std::vector<MappingId>>& lost = {});
  // Reset between owners (service_handover.cc).
  /// Before a device fd of `bdf` goes to `uid` out of `managed` (owned by
  /// `owner`; the caller holds its mutex, not mu_): resets the device the
  /// best way the kernel offers (ManagedContainer::ResetDevice) when
  /// reset.between_owners is on, `uid` is not root, and a user other than
  /// `uid` was handed it since its last reset, or nobody knows who was (its
  /// first hand-out since vfiod started; in a container taken over from a
  /// previous vfiod, its owner is taken as that user). Says what it did.
  /// When no reset exists (ENOTTY, or EPERM: the hot reset would reset a
  /// group of another container): kPermission with that errno if
  /// reset.without_reset is "refuse" and the previous users are known, else
  /// kUnavailable (logged). Any other failure of the reset: kKernel.
  [[nodiscard]] SResult<HandOverReset> ResetForHandOver(ManagedContainer& managed,
                                                        const std::string& bdf, uid_t uid,
                                                        uid_t owner);
  /// Records that `uid` was handed a device fd of `bdf` (after ResetForHandOver).
  void NoteHandOver(const std::string& bdf, uid_t uid);
  /// reset.on_destroy: resets each device of `managed` handed out since its
  /// last reset, before the container closes (its mutex held). Failures are
  /// logged; the record is kept (a device fd a client still holds could
  /// write after the reset), so the next hand-over decides again.
  void ResetOnDestroy(ManagedContainer& managed);
  /// The sysfs unbind of `dev` (vfio-pci: back to its native driver); needs
  /// no lock (takes bind_mu_) and the group reserved in groups_held_.
  [[nodiscard]] SResult<void> SysfsUnbind(const vfio::PciDevice& dev);
  [[nodiscard]] DeviceView MakeDeviceView(const Caller& caller, vfio::PciDevice pci) const;
  /// The VFIO view of `pci` through the container holding its group, when
  /// the caller may use that container; nullopt otherwise (nothing opened).
  [[nodiscard]] std::optional<DeviceVfioView> ProbeVfio(const Caller& caller,
                                                        const vfio::PciDevice& pci);
  // --- the fd store's budget (service_fd_budget.cc) -------------------------
  /// Charges `fds` to fd_budget_ for an object `caller` is about to make
  /// (empty without an fd store). kQuota (EDQUOT) when the charges would
  /// pass limits.max_stored_fds or the caller's share of it,
  /// limits.max_stored_fds_per_user; `op` names the request. Takes a leaf
  /// lock only.
  [[nodiscard]] SResult<FdBudget::Ticket> ChargeStoredFds(const Caller& caller, uint64_t fds,
                                                          const char* op);
  /// The most fds a container over `groups` IOMMU groups with `members`
  /// devices in them keeps in the store: its fd, its own record, a group fd
  /// each and a device fd each. 0 without an fd store.
  [[nodiscard]] uint64_t ContainerStoredFds(uint64_t groups, uint64_t members) const;

  /// Hands the new container's fds to fd_store_ (service_snapshot.cc), then
  /// its own record; takes its mutex, and skips a container already closed
  /// again.
  void StoreContainerFd(ManagedContainer& managed);
  /// Removes the container's and its groups' fds and its own record from
  /// fd_store_, then gives back its charge; needs its mutex.
  void RemoveContainerFds(ContainerId id, const std::vector<int>& groups,
                          const std::vector<std::string>& devices);
  /// Has `managed` pass every device fd it opens from now on to the fd
  /// store ("d-<id>-<bdf>"); needs managed.mu().
  void KeepDevicesLocked(ManagedContainer& managed);
  /// Stores the backing fd of mapping `id` under "m-<id>", then its own
  /// record; needs the container's mutex, not mu_.
  void StoreMappingFd(ManagedContainer& managed, MappingId id, uint64_t engine_id);
  /// Removes the backing fd of mapping `id` and its own record, then gives
  /// back its charge (when it has one).
  void RemoveMappingFd(MappingId id);
  /// The record of container `slot`; nullopt when it is unnamed and its
  /// session is gone (being torn down: not worth keeping). Needs mu_.
  [[nodiscard]] std::optional<lifecycle::ContainerRecord> ContainerRecordLocked(
      const ContainerSlot& slot) const;
  /// The record of mapping `id` (its entries when it can be taken over: fd
  /// kept, entries tiling it; else with no fd name). nullopt when freed
  /// meanwhile or its session is gone. Needs mu_ and its container's mutex.
  [[nodiscard]] std::optional<lifecycle::MappingRecord> MappingRecordLocked(
      MappingId id, const MappingSlot& slot, const ManagedContainer& managed) const;
  /// The record of region `id` while its memory lives (stored_regions_);
  /// nullopt once it is gone. Needs mu_.
  [[nodiscard]] std::optional<lifecycle::RegionRecord> RegionRecordLocked(RegionId id) const;
  /// Stores the file of registered region `id` under "rg-<id>" (no lock held).
  void StoreRegionFd(RegionId id, uid_t uid, const std::shared_ptr<const dma::Backing>& backing);
  /// Takes over the regions of `record` (their fds from `fds`): registered
  /// ones into the detached session of their token, every one charged as
  /// before. Returns their backings by id, for the mappings that are slices.
  std::map<RegionId, std::shared_ptr<const dma::Backing>> ReadoptRegions(
      const lifecycle::StateRecord& record, std::map<std::string, UniqueFd>& fds,
      ReadoptReport& report);
  /// Stores `own` (an object's own record) under "r-<object>" and notes it
  /// for RecordStored; a failure is logged. Needs the object's container's
  /// mutex (so its removal cannot pass it), not mu_.
  void StoreObjectRecord(const std::string& object, const lifecycle::StateRecord& own);
  /// Calls fd_store_.changed when it goes out of scope, and with `durable`
  /// fd_store_.flush (the reply waits for the record): declare it first in a
  /// method that changes the tables, so it runs after every lock is gone.
  /// Its own time goes to `stages`' kRecord when not null.
  /// An aggregate (built with braces): declaring its copies deleted would
  /// end that, and its const reference member already forbids assigning it.
  // NOLINTNEXTLINE(cppcoreguidelines-special-member-functions)
  struct ChangeNote {
    const Service& service;
    bool durable = false;
    StageClock* stages = nullptr;
    ~ChangeNote() {
      StageScope record(stages, Stage::kRecord);
      if (service.fd_store_.changed) {
        service.fd_store_.changed();
      }
      if (durable && service.fd_store_.flush) {
        service.fd_store_.flush();
      }
    }
  };

  // Declaration order is teardown order in reverse: the registries (which
  // hold containers, whose VFIO fds close through kernel_) go before kernel_.
  const Config config_;
  std::unique_ptr<kernel::Kernel> kernel_;
  vfio::PciSysfs sysfs_;
  std::mutex bind_mu_;  // serializes bind/unbind (sysfs writes)
  Policy policy_;
  // Its own leaf lock (Stats::mu_). Maps and unmaps are recorded under mu_
  // with the table change they count, so MetricsOf sees the two agree.
  Stats stats_;
  ExtensionsView extensions_;
  const std::chrono::steady_clock::time_point started_;
  const uint64_t max_locked_bytes_;  // limits.max_locked_bytes, resolved at start
  // Charges of registered hugetlb regions; shared with the Holds inside their
  // Backings, which may outlive the service. Its own leaf lock.
  const std::shared_ptr<LockedCharges> held_ = std::make_shared<LockedCharges>();
  FdStoreHooks fd_store_;  // set before serving, then only read
  // What the objects may keep in fd_store_ (limits.max_stored_fds and
  // max_stored_fds_per_user). Its own leaf lock.
  FdBudget fd_budget_;
  // Own records in the store that no stored state record covers yet, by
  // name ("r-c-<id>", "r-m-<id>"). A leaf lock: taken with or without any other.
  std::mutex object_records_mu_;
  std::set<std::string> object_records_;  // guarded by object_records_mu_
  // Readopt's detached sessions by old token; set before serving, then mu_.
  std::map<std::string, SessionId> detached_;
  std::chrono::seconds grace_{0};  // Readopt's grace period; set before serving

  mutable std::mutex mu_;
  uint64_t next_id_ = 1;                             // guarded by mu_
  std::map<SessionId, Session> sessions_;            // guarded by mu_
  std::map<ContainerId, ContainerSlot> containers_;  // guarded by mu_
  std::deque<MappingSlot> mapping_slots_;            // guarded by mu_
  std::vector<uint32_t> free_mapping_slots_;         // indexes; guarded by mu_
  uint32_t mapping_generation_floor_ = 0;            // of new slots: past every released one; mu_
  std::map<MappingId, std::string> mapping_names_;   // named mappings only; guarded by mu_
  std::map<RegionId, RegionSlot> regions_;           // guarded by mu_
  // Every region whose fd went to the fd store ("rg-<id>"), registered or
  // not: it lives while regions_ or a mapping (its slice) holds the memory.
  // Its fd leaves the store with the first state record stored after the
  // memory is gone (RecordStored). Guarded by mu_.
  std::map<RegionId, StoredRegion> stored_regions_;
  std::map<int, ContainerId> groups_held_;          // group -> container; guarded by mu_
  std::map<ContainerId, LingeringSlot> lingering_;  // destroyed, groups held; mu_
  // Reset between owners: per BDF, the users handed a device fd of it since
  // vfiod last reset it; absent: not handed out since vfiod started (kept in
  // memory only: a restarted vfiod starts empty). Guarded by mu_.
  std::map<std::string, std::set<uid_t>> device_users_;
  std::map<uid_t, Usage> usage_;  // charges, reservations too; mu_
  // By container, while it lives (erased by Teardown); guarded by mu_.
  std::map<ContainerId, ReleaseSlot> releases_;
  std::mutex notify_mu_;            // a leaf lock but for the notifier's own
  ReleaseNotifier notify_release_;  // guarded by notify_mu_
  // Declared last, so destroyed first: its thread calls back into the
  // members above. The destructor stops it before anything is released.
  std::unique_ptr<ReleaseWatcher> watcher_;  // null when it could not start
};

}  // namespace vfiod::service
