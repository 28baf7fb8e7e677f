// The DMA engine: per container, a DmaSpace owning the shadow map of what is
// mapped (always equal to what the kernel holds), the IOVA allocator and the
// entry budget. A map runs as a MapJob, one MAP_DMA chunk per Step(), so the
// caller can let other work run between chunks; it is all-or-nothing: a chunk
// that fails undoes the chunks before it.
//
// Threading: a DmaSpace and its MapJobs are used by one thread at a time;
// nothing here locks (the service holds the owning container's mutex,
// ManagedContainer::mu()). MapJob steps may interleave with other calls on
// the same DmaSpace as long as each runs under that mutex.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <vector>

#include "dma/backing.h"
#include "dma/contiguity.h"
#include "dma/geometry.h"
#include "dma/huge_share.h"
#include "dma/iova_allocator.h"
#include "dma/planner.h"
#include "dma/scatter.h"
#include "dma/shadow_map.h"
#include "proto/result.h"
#include "vfio/container.h"

namespace vfiod::dma {

/// Engine settings (from the daemon's config).
struct EngineConfig {
  uint64_t chunk_bytes = uint64_t{1} << 30;  ///< largest MAP_DMA call
  uint32_t reserve_entries = 0;              ///< DMA entries kept back for other work
};

/// Progress of a map, reported after each chunk.
struct MapProgress {
  uint64_t chunks_done = 0;
  uint64_t chunks_total = 0;
  uint64_t bytes_done = 0;
  uint64_t bytes_total = 0;
};

/// What to map: [offset, offset + size) of `backing`, or the pieces listed in
/// `segments`, as one mapping (one id, mapped and freed all or nothing).
struct MapRequest {
  std::shared_ptr<const Backing> backing;
  uint64_t offset = 0;  ///< a multiple of the IOMMU granule (ignored with segments)
  uint64_t size = 0;    ///< 0: the rest of the backing from `offset` (ignored with segments)
  /// The client named the IOVA: of the range, or with segments that name no
  /// IOVA, of the first segment (they follow back to back).
  std::optional<uint64_t> fixed_iova;
  uint64_t max_iova = UINT64_MAX;  ///< highest IOVA allowed: the device's DMA mask
  Prot prot;
  std::function<void(const MapProgress&)> on_chunk;  ///< called after each chunk; may be empty
  /// A scatter list of `backing`; when non-empty it replaces offset/size.
  /// Either every segment names its IOVA or none does; with none they are
  /// placed back to back in one IOVA range of their total size (the device
  /// sees one buffer), in list order.
  std::vector<ScatterPiece> segments;
};

/// One mapping, as reported to clients and logs. Its contiguity report is
/// computed on demand: DmaSpace::Contiguity.
struct MappingReport {
  uint64_t id = 0;     ///< unique within the DmaSpace, not reused (never 0)
  uint64_t iova = 0;   ///< of the first segment
  uint64_t size = 0;   ///< bytes mapped (all segments)
  uint64_t vaddr = 0;  ///< of the first segment, in vfiod's address space
  BackingKind backing = BackingKind::k4K;
  bool pinned = true;       ///< false for device MMIO
  uint64_t chunks = 0;      ///< MAP_DMA entries it occupies
  uint64_t map_ioctls = 0;  ///< MAP_DMA calls issued for it (= chunks once committed)
  Congruence congruence;    ///< the superpage congruence the (first) IOVA was placed for
  /// The pieces, in request order, when the request had two or more segments;
  /// empty for a single range.
  std::vector<PlacedPiece> segments;
};

/// What an unmap did.
struct UnmapReport {
  uint64_t bytes = 0;     ///< bytes the kernel reported unmapped
  uint64_t ioctls = 0;    ///< UNMAP_DMA calls issued
  uint64_t entries = 0;   ///< kernel (shadow) entries removed
  uint64_t mappings = 0;  ///< mappings released (their slots freed)
};

/// What a DmaSpace holds: committed mappings (a failed rollback's leftovers
/// included), their bytes, and the kernel entries in the shadow map.
struct SpaceUsage {
  uint64_t mappings = 0;
  uint64_t bytes = 0;
  uint64_t entries = 0;
  bool operator==(const SpaceUsage&) const = default;
};

/// One kernel entry of a mapping a previous vfiod made (live restart): the
/// MAP_DMA entry [iova, iova + size) maps [offset, offset + size) of the
/// mapping's backing.
struct AdoptEntry {
  uint64_t iova = 0;
  uint64_t size = 0;
  uint64_t offset = 0;
  bool operator==(const AdoptEntry&) const = default;
};

/// A mapping to take over (DmaSpace::Adopt).
struct AdoptRequest {
  uint64_t key = 0;  ///< the caller's name for it, echoed in its outcome
  /// Its memory, mapped again in this process (ReopenBacking); null when the
  /// stored fd is missing: the mapping cannot be taken over and is released.
  std::shared_ptr<const Backing> backing;
  /// Every kernel entry, by IOVA, back to back (no gap); empty: unknown.
  std::vector<AdoptEntry> entries;
};

/// What became of one AdoptRequest.
struct AdoptOutcome {
  uint64_t key = 0;
  uint64_t id = 0;  ///< the engine's id of it once adopted; 0 when released
  /// Why it was released (op "adopt DMA mapping"): EBADF no backing; EINVAL
  /// entries empty, misaligned, not back to back, outside the backing or
  /// the IOVA ranges, or the kernel's entries are cut differently; ENOENT the
  /// kernel lacks an entry (freed, or never mapped); EEXIST overlaps a
  /// mapping adopted before it (nothing of it is unmapped then); errno of
  /// MAP_DMA(FLAG_VADDR) (ENOMEM: the kernel moves the locked-memory charge
  /// and RLIMIT_MEMLOCK is full).
  std::optional<Error> error;
  uint64_t released_bytes = 0;  ///< what the kernel held of it and unmapped
};

/// What DmaSpace::Adopt did.
struct AdoptReport {
  std::vector<AdoptOutcome> mappings;  ///< in request order
  uint64_t moved_entries = 0;          ///< kernel entries re-pointed at this process
  /// Kernel entries no request described (a map the record did not yet
  /// list), unmapped; and the bytes they held.
  uint64_t stray_bytes = 0;
  /// Unmaps that failed (the entries stay in the kernel; op/errno in text).
  std::vector<Error> unmap_failures;
};

class MapJob;

/// The DMA state of one container. Create it once the container's IOMMU is
/// set (after the first group is attached). It must outlive its MapJobs.
/// Destruction unmaps whatever is still mapped (best effort, errors to stderr).
class DmaSpace {
 public:
  /// Reads the IOMMU info (IOVA ranges, page sizes, DMA_AVAIL) of `container`.
  /// `reader` feeds the contiguity scans; null opens /proc/self/pagemap.
  /// EINVAL: the container has no IOMMU set; errno of GET_INFO / open.
  [[nodiscard]] static Result<std::unique_ptr<DmaSpace>> Create(
      std::shared_ptr<vfio::Container> container, EngineConfig config = {},
      std::unique_ptr<PageInfoReader> reader = nullptr);
  DmaSpace(const DmaSpace&) = delete;
  DmaSpace& operator=(const DmaSpace&) = delete;
  ~DmaSpace();

  /// Checks and plans a map without any MAP_DMA: request checks, memlock
  /// headroom, IOVA placement (from the backing's geometry; pagemap is read
  /// only for 2 MiB hugetlb of 1 GiB or more, a few entries), chunk plan,
  /// entry budget. The IOVA ranges and the entries are reserved until the job
  /// ends. Cost: O(segments * log n) in the n mappings of the space.
  /// EINVAL: no backing, size/offset misaligned or outside the backing, no
  /// prot, fixed IOVA misaligned/outside the ranges/above max_iova; for a
  /// scatter list also (detail names the segment index) an empty segment,
  /// some but not all segments naming an IOVA, fixed_iova together with
  /// segment IOVAs, segment IOVAs overlapping each other; EEXIST: a fixed
  /// IOVA overlaps a mapping; ENOSPC: no IOVA room below max_iova, or the
  /// plan would exhaust DMA_AVAIL (detail: entries needed and left);
  /// ENOMEM: RLIMIT_MEMLOCK would be exceeded; reader errors pass through.
  [[nodiscard]] Result<std::unique_ptr<MapJob>> BeginMap(MapRequest request);

  /// BeginMap, then every step. Errors of BeginMap and of MAP_DMA (ENOMEM
  /// locked-memory limit, EFAULT, ENOSPC, EEXIST when something else mapped
  /// the range); after an error nothing of the request stays mapped.
  [[nodiscard]] Result<MappingReport> Map(MapRequest request);

  /// Unmaps mapping `id` exactly (all its segments), batched by the planner,
  /// and releases its IOVA and its share of the backing. O(k log n) for its
  /// k entries: only the shadow between its first and last IOVA is read.
  /// ENOENT: no such mapping; EIO: the kernel reported unmapping another
  /// number of bytes than the shadow map holds (the shadow is corrected: the
  /// range is gone either way); errno of UNMAP_DMA, in which case the
  /// mapping is kept.
  [[nodiscard]] Result<UnmapReport> Unmap(uint64_t id);

  /// Unmaps everything (container teardown): UNMAP_ALL when supported.
  /// EBUSY: map jobs still running; EIO: byte count mismatch (the shadow is
  /// emptied anyway); errno of UNMAP_DMA (what could not be unmapped stays).
  [[nodiscard]] Result<UnmapReport> UnmapAll();

  /// Live restart: takes over the mappings a previous vfiod left in this
  /// space's container (Container::Adopt), on a new, empty DmaSpace. For
  /// each request, every entry is checked against the kernel and moved to
  /// the backing's new address with the VADDR protocol: UNMAP_DMA
  /// FLAG_VADDR of the entry, then MAP_DMA FLAG_VADDR at the new vaddr, one
  /// entry after the other, so the IOMMU's translations (and device DMA) are
  /// never touched. An entry invalidated already (a graceful predecessor)
  /// is only updated. A request that does not match the kernel is released:
  /// its range is unmapped, and AdoptOutcome::error says why (never trusted).
  /// Then every kernel entry outside the adopted mappings is unmapped
  /// (stray_bytes). The adopted mappings get new engine ids and their exact
  /// IOVA ranges in the allocator (one allocation each, segments where the
  /// backing offsets jump), the shadow holds their entries, and the entry
  /// budget is read again. O(entries * log n).
  /// Errors (nothing touched): EBUSY the space has mappings or jobs;
  /// ENOTSUP the kernel lacks VFIO_UPDATE_VADDR. GET_INFO's errno at the end.
  [[nodiscard]] Result<AdoptReport> Adopt(std::vector<AdoptRequest> requests);
  /// What a restart needs to take mapping `id` over: its backing's fd
  /// (borrowed; -1 for anonymous memory or a BAR) and its kernel entries, each
  /// with its offset in that fd's file (so ReopenBacking's view of the whole
  /// file finds it again). ENOENT: no such mapping; EINVAL: an entry crosses
  /// a segment boundary (not expected: chunks are cut per segment).
  struct Keepable {
    int fd = -1;
    std::vector<AdoptEntry> entries;
  };
  [[nodiscard]] Result<Keepable> KeepableOf(uint64_t id) const;
  /// Invalidates the vaddr of every kernel entry (graceful hand-over: the
  /// successor re-points them), leaving them mapped and pinned. Returns the
  /// bytes invalidated. EBUSY: map jobs running; ENOTSUP: no VFIO_UPDATE_VADDR;
  /// EINVAL: an entry is invalidated already.
  [[nodiscard]] Result<uint64_t> InvalidateAll();
  /// Forgets every mapping without unmapping it (the kernel keeps them for
  /// whoever holds the container fd: a crash in a test, a graceful
  /// hand-over). EBUSY: map jobs running.
  [[nodiscard]] Result<void> Abandon();
  /// The committed mappings, by IOVA.
  [[nodiscard]] std::vector<MappingReport> Mappings() const;
  /// The mapping `id`. ENOENT: no such mapping (or a freed one's id). O(1).
  [[nodiscard]] Result<MappingReport> Find(uint64_t id) const;
  /// Scans the memory of mapping `id` now (pagemap, and kpageflags when the
  /// folio sizes are not known) and summarises it, all segments together.
  /// Device MMIO is not scanned: state kUnknown with a note.
  /// ENOENT: no such mapping; errors of the page-info reader pass through.
  [[nodiscard]] Result<ContiguityReport> Contiguity(uint64_t id);
  /// How much of mapping `id`'s memory is in folios of 2 MiB or more, read
  /// now: from the PFN scan (or the backing's page size) where that tells,
  /// else from /proc/self/smaps (PMD-mapped bytes; needs no privilege but
  /// counts whole VMAs only). ENOENT: no such mapping; EINVAL: device MMIO;
  /// ENOTSUP: PFNs hidden and a piece is not whole VMAs of vfiod's view;
  /// errors of the page-info reader pass through.
  [[nodiscard]] Result<HugeShare> HugeShareOf(uint64_t id);
  /// The shadow map: one entry per MAP_DMA entry the kernel holds, by IOVA
  /// (running jobs' chunks included).
  [[nodiscard]] std::vector<Entry> ShadowEntries() const;
  /// DMA entries still usable (nullopt when the kernel does not report DMA_AVAIL).
  [[nodiscard]] std::optional<uint32_t> EntriesLeft() const;
  /// The committed mappings, their bytes and the kernel entries held. O(1).
  [[nodiscard]] SpaceUsage usage() const { return {live_mappings_, live_bytes_, shadow_.size()}; }
  [[nodiscard]] const IovaAllocator& allocator() const { return allocator_; }
  [[nodiscard]] size_t running_jobs() const { return running_jobs_; }
  [[nodiscard]] const vfio::Container& container() const { return *container_; }

 private:
  friend class MapJob;
  /// One mapping's slot, kept small (one per mapping, up to DMA_AVAIL of
  /// them): the report is rebuilt from it on demand. Live when `backing` is
  /// set; a running job's slot is reserved (not live, not free).
  struct Record {
    std::shared_ptr<const Backing> backing;
    // Two or more segments only; null for a single range.
    std::unique_ptr<const std::vector<PlacedPiece>> segments;
    uint64_t offset = 0;              // of the first segment, in the backing
    uint64_t iova = 0;                // of the first segment
    uint64_t size = 0;                // all segments
    uint32_t congruence_residue = 0;  // < modulus <= 1 GiB
    uint32_t chunks = 0;              // MAP_DMA entries (one MAP_DMA call each)
    uint32_t generation = 1;          // of the slot: the id's upper half
    uint8_t congruence_shift = 12;    // log2 of the congruence modulus
    bool one_range = true;            // one IOVA allocation [iova, iova + size)
  };
  /// A checked request: its segments resolved to offsets and sizes, in
  /// request order; iova filled in when named (`fixed`) or once allocated.
  struct Pieces {
    std::vector<PlacedPiece> list;
    uint64_t total = 0;  // bytes
    bool fixed = false;  // every segment named its IOVA
  };

  DmaSpace(std::shared_ptr<vfio::Container> container, EngineConfig config,
           std::unique_ptr<PageInfoReader> reader, IovaAllocator allocator,
           std::optional<uint32_t> entry_limit);

  [[nodiscard]] Result<Pieces> CheckRequest(const MapRequest& request) const;
  // Adopt's steps (engine_adopt.cc).
  [[nodiscard]] Result<void> CheckAdopt(const AdoptRequest& request) const;
  [[nodiscard]] Result<void> MoveEntries(const AdoptRequest& request, uint64_t& moved);
  void RecordAdopted(AdoptRequest& request, AdoptOutcome& outcome);
  void UnmapStray(AdoptReport& report);
  /// The congruence for [vaddr, vaddr + size): from the geometry, or from
  /// `scan` when the geometry is unknown.
  [[nodiscard]] Result<Congruence> Place(const Backing& backing, const FolioGeometry& geometry,
                                         uint64_t vaddr, uint64_t size,
                                         const ContiguityScan* scan) const;
  /// Allocates the IOVAs of `pieces` (one range, or one per named segment).
  [[nodiscard]] Result<void> AllocateIovas(Pieces& pieces, const MapRequest& request,
                                           const Congruence& congruence);
  /// Frees what AllocateIovas took for `placed`.
  [[nodiscard]] Result<void> FreeIovas(const std::vector<PlacedPiece>& placed, bool one_range,
                                       uint64_t total);
  [[nodiscard]] static std::vector<PlacedPiece> PlacedOf(const Record& record);
  /// The backing's page size where it holds for [vaddr, +size) whole (the
  /// scan then reads no kpageflags), else 0.
  [[nodiscard]] static uint64_t KnownFolioSize(const Backing& backing, uint64_t vaddr,
                                               uint64_t size);
  [[nodiscard]] Result<ContiguityScan> Scan(const Backing& backing, uint64_t vaddr,
                                            uint64_t size) const;
  [[nodiscard]] MappingReport ReportOf(uint64_t id, const Record& record) const;
  /// The live record of `id`, or null (no such slot, reserved, or stale id).
  [[nodiscard]] const Record* Lookup(uint64_t id) const;
  /// Takes a slot for a new mapping; returns its id. Reserved until stored.
  [[nodiscard]] uint64_t ReserveSlot();
  /// Empties the slot of `id` (releasing its backing share) for reuse under
  /// a new generation, so `id` never names anything again.
  void ReleaseSlot(uint64_t id);
  [[nodiscard]] Record& SlotOf(uint64_t id) { return slots_[SlotNumberOf(id) - 1]; }
  [[nodiscard]] static uint64_t IdOf(const Record& record, size_t index) {
    return (uint64_t{record.generation} << 32) | (index + 1);
  }
  /// The slot number (index + 1) of mapping `id`: what shadow entries name.
  [[nodiscard]] static uint32_t SlotNumberOf(uint64_t id) {
    return static_cast<uint32_t>(id & 0xffffffff);
  }
  /// Unmaps exactly the shadow entries listed in `entries` (IOVA order); drops
  /// them from the shadow as the kernel confirms. `teardown` allows one
  /// UNMAP_ALL when `entries` is the whole shadow; otherwise only ranges
  /// holding nothing but these entries are unmapped, so a mapping vfiod does
  /// not know of survives.
  [[nodiscard]] Result<UnmapReport> UnmapEntries(const std::vector<Entry>& entries,
                                                 bool teardown = false);
  [[nodiscard]] Result<void> ExecuteUnmap(const UnmapArgs& op, UnmapReport& report);
  /// Shadow entries inside [first, last] (inclusive), of `owner` or (owner 0) anyone's.
  [[nodiscard]] std::vector<Entry> EntriesIn(uint64_t first, uint64_t last,
                                             uint64_t owner = 0) const;
  [[nodiscard]] std::vector<Entry> EntriesOf(uint64_t owner, const Record& record) const;

  // Teardown: the destructor body unmaps first; then members go in reverse
  // order, slots_ (releasing backings, whose memory is no longer pinned)
  // before the container share, which must outlive every mapping.
  std::shared_ptr<vfio::Container> container_;
  EngineConfig config_;
  std::unique_ptr<PageInfoReader> reader_;
  IovaAllocator allocator_;
  std::optional<uint32_t> entry_limit_;  // DMA_AVAIL when the space was created
  uint64_t entries_reserved_ = 0;        // planned by running jobs, not yet mapped
  size_t running_jobs_ = 0;
  uint64_t live_mappings_ = 0;  // committed records
  uint64_t live_bytes_ = 0;     // their sizes
  ShadowMap shadow_;            // the kernel's entries, by IOVA, naming their slot
  // Mapping ids are generation << 32 | (slot index + 1): never 0, O(1) to
  // look up, and not reused while a slot's 32-bit generation has not wrapped.
  // A deque: no per-mapping node, no slack of a doubling vector.
  std::deque<Record> slots_;
  std::vector<uint32_t> free_slots_;  // indexes of empty slots
};

/// A map in progress. Step() issues one MAP_DMA chunk; after the last one the
/// mapping is committed to the DmaSpace. Destroying an unfinished job (or a
/// failing step) unmaps its chunks and releases its IOVA and entries.
class MapJob {
 public:
  MapJob(const MapJob&) = delete;
  MapJob& operator=(const MapJob&) = delete;
  ~MapJob();

  /// Maps the next chunk. Returns true once the mapping is complete (then
  /// report() is final). On error the job is rolled back and finished:
  /// errno of MAP_DMA, or of the rollback's UNMAP_DMA (then the chunks that
  /// could not be unmapped stay in the shadow as a mapping of their own, so
  /// UnmapAll can retry). EINVAL: the job is already finished.
  [[nodiscard]] Result<bool> Step();

  [[nodiscard]] bool finished() const { return finished_; }
  [[nodiscard]] const MappingReport& report() const { return report_; }
  [[nodiscard]] MapProgress progress() const;

 private:
  friend class DmaSpace;
  MapJob(DmaSpace& space, MapRequest request, MappingReport report, bool one_range,
         std::vector<MapArgs> ops)
      : space_(&space),
        request_(std::move(request)),
        report_(std::move(report)),
        one_range_(one_range),
        ops_(std::move(ops)) {}
  void Commit();
  /// Records the mapping in the space (as committed, or what a failed rollback
  /// left), moving the backing share into the record: the job is finished.
  void Store();
  [[nodiscard]] Result<void> Rollback();
  /// The shadow entries this job has mapped so far.
  [[nodiscard]] std::vector<Entry> MappedEntries() const;
  [[nodiscard]] std::vector<PlacedPiece> Placed() const;

  DmaSpace* space_;
  MapRequest request_;  // holds the backing alive while chunks are mapped
  MappingReport report_;
  bool one_range_;  // the IOVAs are one allocation (else one per segment)
  std::vector<MapArgs> ops_;
  size_t next_ = 0;  // index of the next chunk
  uint64_t bytes_done_ = 0;
  bool finished_ = false;
};

}  // namespace vfiod::dma
