// DmaSpace::Adopt on the model kernel: a vfiod "crashes" (its DmaSpace, group
// and container give their fds up without unmapping, as a killed process's
// fds live on in the fd store) and a new DmaSpace over the same fds takes the
// mappings over with the VADDR protocol.
#include <fcntl.h>
#include <unistd.h>

#include <cstring>

#include "engine_fixture.h"

namespace vfiod::dma::testing {
namespace {

constexpr uint64_t kChunk = 64 << 10;

/// What a restart keeps: the container and group fds, each backing's memfd,
/// and each mapping's kernel entries (the state record's part).
struct Kept {
  int container_fd = -1;
  int group_fd = -1;
  std::vector<std::pair<UniqueFd, std::vector<AdoptEntry>>> mappings;
};

class AdoptTest : public EngineTest {
 protected:
  void SetUp() override {
    EngineTest::SetUp();
    NewSpace({.chunk_bytes = kChunk});
  }

  std::shared_ptr<const Backing> Shared(uint64_t size) {
    auto backing = CreatePagesBacking(size, /*shareable=*/true);
    EXPECT_TRUE(backing) << backing.error().message();
    return std::make_shared<const Backing>(std::move(*backing));
  }

  MappingReport MapAt(const std::shared_ptr<const Backing>& backing, uint64_t iova) {
    auto report = space_->Map({.backing = backing, .fixed_iova = iova});
    EXPECT_TRUE(report) << report.error().message();
    return report.value_or(MappingReport{});
  }

  /// The kernel entries of mapping `report` as the record lists them.
  std::vector<AdoptEntry> EntriesOf(const MappingReport& report, const Backing& backing) {
    std::vector<AdoptEntry> out;
    for (const Entry& e : space_->ShadowEntries()) {
      if (e.iova >= report.iova && e.iova < report.iova + report.size) {
        out.push_back({e.iova, e.size, report.vaddr - backing.vaddr() + (e.iova - report.iova)});
      }
    }
    return out;
  }

  /// The crash: every object gives its fd up, nothing is unmapped or detached.
  Kept Crash(std::vector<std::pair<std::shared_ptr<const Backing>, std::vector<AdoptEntry>>> m) {
    Kept kept;
    for (auto& [backing, entries] : m) {
      kept.mappings.emplace_back(UniqueFd(::fcntl(backing->fd(), F_DUPFD_CLOEXEC, 0)),
                                 std::move(entries));
    }
    m.clear();
    EXPECT_TRUE(space_->Abandon());
    space_.reset();
    kept.group_fd = group_->Relinquish();
    kept.container_fd = container_->Relinquish();
    group_.reset();
    container_.reset();
    return kept;
  }

  /// The restarted vfiod: adopts the fds and asks for `requests`.
  Result<AdoptReport> Restart(Kept& kept, std::vector<AdoptRequest> requests) {
    container_ =
        vfio::Container::Adopt(model_, kernel::KernelFd(&model_, kept.container_fd)).value();
    group_ =
        vfio::Group::Adopt(model_, kEduGroup, kernel::KernelFd(&model_, kept.group_fd), container_)
            .value();
    NewSpace({.chunk_bytes = kChunk});
    return space_->Adopt(std::move(requests));
  }

  AdoptRequest Reopened(uint64_t key, UniqueFd fd, std::vector<AdoptEntry> entries) {
    auto backing = ReopenBacking(std::move(fd), BackingKind::k4K);
    EXPECT_TRUE(backing) << backing.error().message();
    return {.key = key,
            .backing = std::make_shared<const Backing>(std::move(*backing)),
            .entries = std::move(entries)};
  }
};

TEST_F(AdoptTest, TakesOverEveryEntryAtTheSameIovaWithoutUnmapping) {
  auto a = Shared(4 * kChunk);
  auto b = Shared(2 * kChunk);
  std::memset(a->data(), 0x5a, a->size());
  MappingReport ra = MapAt(a, 0x100000);
  MappingReport rb = MapAt(b, 0x800000);
  ASSERT_EQ(ra.chunks, 4u);
  const uint64_t locked = model_.LockedBytes();
  const auto entries_before = ModelEntries();
  const uint64_t unmaps = UnmapCalls();
  Kept kept = Crash({{a, EntriesOf(ra, *a)}, {b, EntriesOf(rb, *b)}});
  a.reset();
  b.reset();

  std::vector<AdoptRequest> requests;
  requests.push_back(Reopened(7, std::move(kept.mappings[0].first), kept.mappings[0].second));
  requests.push_back(Reopened(8, std::move(kept.mappings[1].first), kept.mappings[1].second));
  const uint64_t new_a = requests[0].backing->vaddr();
  auto report = Restart(kept, std::move(requests));
  ASSERT_TRUE(report) << report.error().message();
  ASSERT_EQ(report->mappings.size(), 2u);
  EXPECT_FALSE(report->mappings[0].error);
  EXPECT_FALSE(report->mappings[1].error);
  EXPECT_EQ(report->mappings[0].key, 7u);
  EXPECT_EQ(report->moved_entries, 6u);
  EXPECT_EQ(report->stray_bytes, 0u);
  EXPECT_EQ(UnmapCalls() - unmaps, 6u + 4u);  // 6 invalidations, 4 empty gaps swept
  EXPECT_EQ(ModelEntries(), entries_before);
  EXPECT_EQ(model_.LockedBytes(), locked);
  // Each kernel entry now names the new view, entry by entry.
  auto model = model_.Entries(container_->fd()).value();
  EXPECT_EQ(model.front().vaddr, new_a);
  EXPECT_EQ(model[1].vaddr, new_a + kChunk);

  auto listed = space_->Mappings();
  ASSERT_EQ(listed.size(), 2u);
  EXPECT_EQ(listed[0].iova, 0x100000u);
  EXPECT_EQ(listed[0].size, 4 * kChunk);
  EXPECT_EQ(listed[0].chunks, 4u);
  EXPECT_EQ(listed[0].vaddr, new_a);
  EXPECT_EQ(static_cast<unsigned char*>(reinterpret_cast<void*>(listed[0].vaddr))[100], 0x5a);
  EXPECT_EQ(space_->usage(), (SpaceUsage{2, 6 * kChunk, 6}));
  EXPECT_EQ(space_->allocator().allocation_count(), 2u);
  EXPECT_EQ(space_->EntriesLeft(), 65535u - 6u);

  // The IOVAs are taken: a fixed map there is refused; elsewhere it works.
  EXPECT_EQ(space_->Map({.backing = Pages(kChunk), .fixed_iova = 0x100000}).error().code, EEXIST);
  auto other = space_->Map({.backing = Pages(kChunk)});
  ASSERT_TRUE(other) << other.error().message();
  EXPECT_TRUE(space_->Unmap(other->id));
  auto freed = space_->Unmap(report->mappings[0].id);
  ASSERT_TRUE(freed) << freed.error().message();
  EXPECT_EQ(freed->bytes, 4 * kChunk);
  EXPECT_TRUE(space_->Unmap(report->mappings[1].id));
  EXPECT_TRUE(ModelEntries().empty());
  EXPECT_EQ(space_->allocator().allocation_count(), 0u);
  EXPECT_EQ(model_.LockedBytes(), 0u);
}

// A mapping split into segments (the backing offsets jump) comes back as one
// allocation with the same segments.
TEST_F(AdoptTest, KeepsTheSegmentsOfAScatterList) {
  auto a = Shared(4 * kChunk);
  auto r = space_->Map(
      {.backing = a,
       .segments = {{.offset = 2 * kChunk, .size = kChunk}, {.offset = 0, .size = kChunk}}});
  ASSERT_TRUE(r) << r.error().message();
  std::vector<AdoptEntry> entries = {{r->iova, kChunk, 2 * kChunk}, {r->iova + kChunk, kChunk, 0}};
  Kept kept = Crash({{a, entries}});
  a.reset();
  auto report = Restart(kept, {Reopened(1, std::move(kept.mappings[0].first), entries)});
  ASSERT_TRUE(report) << report.error().message();
  auto found = space_->Find(report->mappings[0].id);
  ASSERT_TRUE(found);
  EXPECT_EQ(found->segments, (std::vector<PlacedPiece>{{2 * kChunk, r->iova, kChunk},
                                                       {0, r->iova + kChunk, kChunk}}));
}

// A graceful predecessor invalidated every vaddr before it left: the entries
// are only updated.
TEST_F(AdoptTest, TakesOverEntriesInvalidatedAlready) {
  auto a = Shared(2 * kChunk);
  MappingReport ra = MapAt(a, 0x100000);
  auto entries = EntriesOf(ra, *a);
  auto invalidated = space_->InvalidateAll();
  ASSERT_TRUE(invalidated) << invalidated.error().message();
  EXPECT_EQ(*invalidated, 2 * kChunk);
  EXPECT_EQ(space_->InvalidateAll().error().code, EINVAL);  // once only
  Kept kept = Crash({{a, entries}});
  a.reset();
  auto report = Restart(kept, {Reopened(1, std::move(kept.mappings[0].first), entries)});
  ASSERT_TRUE(report) << report.error().message();
  EXPECT_FALSE(report->mappings[0].error);
  EXPECT_EQ(report->moved_entries, 2u);
  EXPECT_TRUE(space_->Unmap(report->mappings[0].id));
}

// What the record does not match is released, never trusted: a missing entry
// (a free the record did not see), a missing backing fd, entries cut
// otherwise, and kernel entries no request names (a map the record missed).
TEST_F(AdoptTest, ReleasesWhatDoesNotMatchTheKernel) {
  auto a = Shared(2 * kChunk);
  auto b = Shared(2 * kChunk);
  auto c = Shared(2 * kChunk);
  auto d = Shared(kChunk);
  MappingReport ra = MapAt(a, 0x100000);
  MappingReport rb = MapAt(b, 0x200000);
  MappingReport rc = MapAt(c, 0x300000);
  MapAt(d, 0x400000);  // not in the record
  auto ea = EntriesOf(ra, *a);
  auto eb = EntriesOf(rb, *b);
  std::vector<AdoptEntry> ec = {{rc.iova, 2 * kChunk, 0}};  // the kernel has two entries
  ASSERT_TRUE(container_->Unmap(ea[1].iova, ea[1].size));   // half freed
  Kept kept = Crash({{a, ea}, {b, eb}, {c, ec}});
  a.reset();
  b.reset();
  c.reset();
  d.reset();
  std::vector<AdoptRequest> requests;
  requests.push_back(Reopened(1, std::move(kept.mappings[0].first), ea));
  requests.push_back({.key = 2, .backing = nullptr, .entries = eb});
  requests.push_back(Reopened(3, std::move(kept.mappings[2].first), ec));
  requests.push_back(Reopened(4, UniqueFd(::fcntl(requests[0].backing->fd(), F_DUPFD_CLOEXEC, 0)),
                              {{0x100000, kChunk, 0}}));  // overlaps mapping 1's range
  auto report = Restart(kept, std::move(requests));
  ASSERT_TRUE(report) << report.error().message();
  ASSERT_EQ(report->mappings.size(), 4u);
  ASSERT_TRUE(report->mappings[0].error);
  EXPECT_EQ(report->mappings[0].error->code, ENOENT);
  EXPECT_EQ(report->mappings[0].released_bytes, kChunk);
  ASSERT_TRUE(report->mappings[1].error);
  EXPECT_EQ(report->mappings[1].error->code, EBADF);
  EXPECT_EQ(report->mappings[1].released_bytes, 2 * kChunk);
  ASSERT_TRUE(report->mappings[2].error);
  EXPECT_EQ(report->mappings[2].error->code, EINVAL);
  EXPECT_EQ(report->mappings[2].released_bytes, 2 * kChunk);
  // Mapping 1 was released, so 4's range is free: its entry is gone too.
  ASSERT_TRUE(report->mappings[3].error);
  EXPECT_EQ(report->mappings[3].error->code, ENOENT);
  EXPECT_EQ(report->stray_bytes, kChunk);  // d
  EXPECT_TRUE(report->unmap_failures.empty());
  EXPECT_TRUE(ModelEntries().empty());
  EXPECT_EQ(model_.LockedBytes(), 0u);
  EXPECT_EQ(space_->usage(), (SpaceUsage{}));
  EXPECT_EQ(space_->allocator().allocation_count(), 0u);
}

TEST_F(AdoptTest, AnOverlappingRequestIsRefusedWithoutUnmapping) {
  auto a = Shared(2 * kChunk);
  MappingReport ra = MapAt(a, 0x100000);
  auto ea = EntriesOf(ra, *a);
  Kept kept = Crash({{a, ea}});
  a.reset();
  std::vector<AdoptRequest> requests;
  requests.push_back(Reopened(1, std::move(kept.mappings[0].first), ea));
  requests.push_back(
      Reopened(2, UniqueFd(::fcntl(requests[0].backing->fd(), F_DUPFD_CLOEXEC, 0)), {ea[0]}));
  auto report = Restart(kept, std::move(requests));
  ASSERT_TRUE(report) << report.error().message();
  EXPECT_FALSE(report->mappings[0].error);
  ASSERT_TRUE(report->mappings[1].error);
  EXPECT_EQ(report->mappings[1].error->code, EEXIST);
  EXPECT_EQ(report->mappings[1].released_bytes, 0u);
  EXPECT_EQ(ModelEntries().size(), 2u);
}

TEST_F(AdoptTest, OnlyANewSpaceAdopts) {
  MapAt(Shared(kChunk), 0x100000);
  EXPECT_EQ(space_->Adopt({}).error().code, EBUSY);
}

TEST_F(AdoptTest, ReopenRefusesWhatIsNoStoredBacking) {
  EXPECT_EQ(ReopenBacking(UniqueFd(), BackingKind::kThp).error().code, EBADF);
  UniqueFd null(::open("/dev/null", O_RDWR | O_CLOEXEC));
  EXPECT_EQ(ReopenBacking(std::move(null), BackingKind::kThp).error().code, EINVAL);
  auto a = Shared(kChunk);
  UniqueFd copy(::fcntl(a->fd(), F_DUPFD_CLOEXEC, 0));
  EXPECT_EQ(ReopenBacking(std::move(copy), BackingKind::kBar).error().code, EINVAL);
}

TEST_F(AdoptTest, AContainerWithoutIommuIsNotAdopted) {
  auto bare = vfio::Container::Open(model_).value();
  int fd = bare->Relinquish();
  EXPECT_EQ(vfio::Container::Adopt(model_, kernel::KernelFd(&model_, fd)).error().code, EINVAL);
}

}  // namespace
}  // namespace vfiod::dma::testing
