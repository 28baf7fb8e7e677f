// Live restart on the model kernel, in one process: vfiod A builds
// containers and mappings with the fd store hooks pointing at a fake store,
// then "crashes" (its kernel seam goes dead: nothing it does on the way out
// reaches the model, as nothing a SIGKILLed process does reaches the
// kernel); vfiod B takes over from A's state record and the stored fds
// (Service::Readopt). The mappings keep their ids and IOVAs, the kernel's
// entries are re-pointed at B's memory without being unmapped, charges and
// locked memory are what they were, unnamed objects wait for session.resume,
// and what does not match the kernel is released.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>

#include <chrono>
#include <cstring>
#include <map>
#include <mutex>
#include <thread>

#include "kernel/fault_kernel.h"
#include "lifecycle/object_record.h"
#include "lifecycle/sealed_memfd.h"
#include "lifecycle/state_record.h"
#include "lifecycle/stored_fds.h"
#include "model_service.h"
#include "service/service.h"

namespace vfiod::service {
namespace {

using model_service::EduConfig;
using model_service::kEdu;
using model_service::kIvshmem;

constexpr uid_t kUser = 1000;
constexpr uid_t kOther = 1001;
constexpr uint64_t kMiB = 1 << 20;

/// The model seen by one vfiod process. After Crash() nothing it does reaches
/// the model any more: calls fail with EBADF and close() is dropped, so the
/// model keeps every fd, group and mapping as the process left them.
class CrashableKernel final : public kernel::ForwardingKernel {
 public:
  using ForwardingKernel::ForwardingKernel;
  void Crash() { crashed_ = true; }
  /// The store holds a copy of every fd from now on: closing ours closes
  /// no file (the model has no dup, so a close would detach the group).
  void StoreHoldsCopies() { copies_ = true; }
  Result<int> open(const std::string& path, int flags) override {
    return crashed_ ? Dead() : ForwardingKernel::open(path, flags);
  }
  void close(int fd) override {
    if (!crashed_ && !copies_) {
      ForwardingKernel::close(fd);
    }
  }
  Result<int> ioctl(int fd, unsigned long request, void* arg) override {
    return crashed_ ? Dead() : ForwardingKernel::ioctl(fd, request, arg);
  }
  Result<int> ioctl_value(int fd, unsigned long request, unsigned long value) override {
    return crashed_ ? Dead() : ForwardingKernel::ioctl_value(fd, request, value);
  }
  Result<void*> mmap(void* addr, size_t len, int prot, int flags, int fd, off_t off) override {
    return crashed_ ? Fail(EBADF, "mmap", "crashed")
                    : ForwardingKernel::mmap(addr, len, prot, flags, fd, off);
  }
  Result<void> munmap(void* addr, size_t len) override {
    return crashed_ ? Fail(EBADF, "munmap", "crashed") : ForwardingKernel::munmap(addr, len);
  }
  Result<size_t> pread(int fd, void* buf, size_t len, off_t off) override {
    return crashed_ ? Fail(EBADF, "pread", "crashed") : ForwardingKernel::pread(fd, buf, len, off);
  }
  Result<size_t> pwrite(int fd, const void* buf, size_t len, off_t off) override {
    return crashed_ ? Fail(EBADF, "pwrite", "crashed")
                    : ForwardingKernel::pwrite(fd, buf, len, off);
  }

 private:
  static std::unexpected<Error> Dead() { return Fail(EBADF, "kernel", "the process crashed"); }
  bool crashed_ = false;
  bool copies_ = false;
};

/// Whether the store holds a real file under `name`: a mapping's memfd or
/// an own record (a model VFIO fd is a number in the model's table).
bool IsFile(const std::string& name) {
  return name.starts_with("m-") || name.starts_with("r-") || name.starts_with("rg-");
}

/// The service manager's fd store as the hooks see it. A memfd is a real
/// file: the store keeps a dup, as systemd does. A model VFIO fd is a number
/// in the model's table (the model has no dup): the store keeps the number,
/// which the crashed process never closes.
struct FakeStore {
  std::map<std::string, UniqueFd> fds;
  bool open = true;  ///< false once the process crashed: it stores nothing more
  Service::FdStoreHooks Hooks() {
    Service::FdStoreHooks hooks;
    hooks.store = [this](const std::string& name, int fd) {
      if (open) {
        fds[name] = UniqueFd(IsFile(name) ? ::fcntl(fd, F_DUPFD_CLOEXEC, 0) : fd);
      }
    };
    hooks.remove = [this](const std::string& name) {
      auto it = fds.find(name);
      if (open && it != fds.end()) {
        if (!IsFile(name)) {
          (void)it->second.release();  // the model's number: its owner closes it
        }
        fds.erase(it);
      }
    };
    return hooks;
  }
  ~FakeStore() {
    for (auto& [name, fd] : fds) {
      if (!IsFile(name)) {
        (void)fd.release();
      }
    }
  }
  /// The own records in the store, as a restarted vfiod gets them (copies).
  std::vector<lifecycle::NamedFd> OwnRecords() const {
    std::vector<lifecycle::NamedFd> out;
    for (const auto& [name, fd] : fds) {
      if (lifecycle::IsObjectRecordName(name)) {
        out.push_back({name, UniqueFd(::fcntl(fd.get(), F_DUPFD_CLOEXEC, 0))});
      }
    }
    return out;
  }
};

class ReadoptTest : public model_service::ModelServiceTest {
 protected:
  ReadoptTest() {
    Config config =
        EduConfig(kUser, Quota{.locked_bytes = 64 * kMiB, .mappings = 8, .containers = 4});
    config.policy.rules[0].uids = {kUser, kOther};
    Start(config);
    // Start() built service_ over faulty_; vfiod A runs over a crashable seam.
    auto seam = std::make_unique<CrashableKernel>(model_);
    a_kernel_ = seam.get();
    service_ = std::make_unique<Service>(config, std::move(seam), vfio::PciSysfs(root_));
    service_->SetFdStoreHooks(store_.Hooks());
    config_ = config;
  }
  ~ReadoptTest() override { service_.reset(); }  // before store_, which its hooks use
  /// vfiod A dies at this point; returns its last state record, as read back.
  lifecycle::StateRecord Crash() {
    lifecycle::StateRecord record = service_->SnapshotState();
    record.generation = 7;
    auto decoded = lifecycle::DecodeStateRecord(lifecycle::EncodeStateRecord(record));
    EXPECT_TRUE(decoded) << decoded.error().message();
    store_.open = false;
    a_kernel_->Crash();
    service_.reset();
    store_.open = true;
    return decoded ? *decoded : record;
  }
  /// vfiod B starts over the same model and takes over.
  Service::ReadoptReport Restart(const lifecycle::StateRecord& record,
                                 std::chrono::seconds grace = std::chrono::seconds(60)) {
    service_ = std::make_unique<Service>(
        config_, std::make_unique<kernel::ForwardingKernel>(model_), vfio::PciSysfs(root_));
    service_->SetFdStoreHooks(store_.Hooks());
    std::map<std::string, UniqueFd> passed;
    for (auto& [name, fd] : store_.fds) {
      const int copy = IsFile(name) ? ::fcntl(fd.get(), F_DUPFD_CLOEXEC, 0) : fd.get();
      passed[name] = UniqueFd(copy);
    }
    Service::ReadoptReport report = service_->Readopt(record, passed, grace);
    for (auto& [name, fd] : passed) {  // not taken: a model number stays the store's
      if (!IsFile(name)) {
        (void)fd.release();
      }
    }
    return report;
  }
  /// Maps the client's copy of an allocation and fills it with `byte`.
  static void Fill(const MapResult& r, unsigned char byte) {
    void* p = ::mmap(nullptr, r.mapping.size, PROT_READ | PROT_WRITE, MAP_SHARED, r.fd.get(), 0);
    ASSERT_NE(p, MAP_FAILED);
    std::memset(p, byte, r.mapping.size);
    ::munmap(p, r.mapping.size);
  }
  /// What the model's IOMMU translates `iova` of the container to: the byte
  /// at the vaddr of the entry holding it (what a device's DMA would read).
  unsigned char DeviceReads(int container_fd, uint64_t iova) {
    auto mappings = model_.Entries(container_fd);
    EXPECT_TRUE(mappings);
    for (const kernel::ModelEntry& m : mappings.value_or(std::vector<kernel::ModelEntry>{})) {
      if (iova >= m.iova && iova < m.iova + m.size) {
        return *reinterpret_cast<const unsigned char*>(m.vaddr + (iova - m.iova));
      }
    }
    ADD_FAILURE() << "iova " << iova << " is not mapped";
    return 0;
  }
  /// Writes `byte` where the model's IOMMU translates `iova` of the container.
  void DeviceWrites(int container_fd, uint64_t iova, unsigned char byte) {
    for (const kernel::ModelEntry& m :
         model_.Entries(container_fd).value_or(std::vector<kernel::ModelEntry>{})) {
      if (iova >= m.iova && iova < m.iova + m.size) {
        *reinterpret_cast<unsigned char*>(m.vaddr + (iova - m.iova)) = byte;
        return;
      }
    }
    ADD_FAILURE() << "iova " << iova << " is not mapped";
  }
  /// The model's entries of a container: (IOVA, size), by IOVA.
  std::vector<std::pair<uint64_t, uint64_t>> Entries(int container_fd) {
    std::vector<std::pair<uint64_t, uint64_t>> out;
    for (const kernel::ModelEntry& m :
         model_.Entries(container_fd).value_or(std::vector<kernel::ModelEntry>{})) {
      out.emplace_back(m.iova, m.size);
    }
    return out;
  }
  int ContainerFd(ContainerId id) { return store_.fds.at("c-" + std::to_string(id)).get(); }
  AllocRequest Alloc(ContainerId c, uint64_t size, std::string name) {
    AllocRequest r;
    r.container = c;
    r.size = size;
    r.name = std::move(name);
    return r;
  }

  CrashableKernel* a_kernel_ = nullptr;
  FakeStore store_;
  Config config_;
};

TEST_F(ReadoptTest, TakesOverEveryMappingAtItsIovaWithTheSameMemoryAndCharges) {
  Caller user = Open(kUser);
  auto ring = service_->CreateContainer(user, {kEdu}, "ring", {});
  ASSERT_TRUE(ring) << ring.error().error.message();
  auto kbuf = service_->Alloc(user, Alloc(ring->id, 2 * kMiB, "kbuf"), {});
  ASSERT_TRUE(kbuf) << kbuf.error().error.message();
  auto scratch = service_->Alloc(user, Alloc(ring->id, kMiB, ""), {});
  ASSERT_TRUE(scratch) << scratch.error().error.message();
  Fill(*kbuf, 0x5a);
  Fill(*scratch, 0xc3);
  const std::string token = service_->SessionToken(user.session);
  const uint64_t locked = model_.LockedBytes();
  const std::vector<std::pair<uint64_t, uint64_t>> entries = Entries(ContainerFd(ring->id));
  const uint64_t maps = model_.IoctlCount("VFIO_IOMMU_MAP_DMA");
  const StatusView before = service_->Status();
  // The fd store's share: the container 4 (edu's group of one), 2 a mapping.
  EXPECT_EQ(service_->StatusFor(user).stored_fds_charged, 8u);

  const lifecycle::StateRecord record = Crash();
  auto report = Restart(record);
  EXPECT_EQ(report.containers, 1u);
  EXPECT_EQ(report.mappings, 2u);
  EXPECT_EQ(report.released_containers + report.released_mappings + report.stray_bytes, 0u);
  EXPECT_EQ(report.detached_sessions, 1u);  // the unnamed mapping's session

  // Same ids and IOVAs; the device reads the memory the client wrote, now
  // through B's view (every entry was re-pointed, none unmapped).
  Caller again = Open(kUser);
  auto info = service_->MappingInfo(again, kbuf->mapping.id);
  ASSERT_TRUE(info) << info.error().error.message();
  EXPECT_EQ(info->iova, kbuf->mapping.iova);
  EXPECT_EQ(info->name, "kbuf");
  EXPECT_EQ(DeviceReads(ContainerFd(ring->id), kbuf->mapping.iova + kMiB + 5), 0x5a);
  EXPECT_EQ(DeviceReads(ContainerFd(ring->id), scratch->mapping.iova), 0xc3);
  EXPECT_EQ(model_.LockedBytes(), locked);             // nothing pinned twice
  EXPECT_EQ(Entries(ContainerFd(ring->id)), entries);  // the same kernel entries
  EXPECT_EQ(model_.IoctlCount("VFIO_IOMMU_MAP_DMA") - maps, entries.size());  // one VADDR each
  const StatusView after = service_->Status();
  EXPECT_EQ(after.locked_bytes, before.locked_bytes);
  EXPECT_EQ(after.mappings, before.mappings);
  EXPECT_EQ(after.containers, before.containers);
  EXPECT_EQ(after.detached_sessions, 1u);
  EXPECT_EQ(service_->StatusFor(again).stored_fds_charged, 8u);  // the owner's again
  EXPECT_EQ(service_->StatusFor(Open(kOther)).stored_fds_charged, 0u);

  // The unnamed mapping is the detached session's until resumed: not
  // another user's, not with a wrong token.
  Caller other = Open(kOther);
  auto freed = service_->FreeMapping(other, scratch->mapping.id);
  ASSERT_FALSE(freed);
  EXPECT_EQ(freed.error().kind, ErrorKind::kNotFound);
  auto stolen = service_->ResumeSession(other, token);
  ASSERT_FALSE(stolen);
  EXPECT_EQ(stolen.error().kind, ErrorKind::kNotFound);
  EXPECT_FALSE(service_->ResumeSession(again, std::string(32, '0')));
  auto resumed = service_->ResumeSession(again, token);
  ASSERT_TRUE(resumed) << resumed.error().error.message();
  EXPECT_EQ(resumed->mappings, 1u);
  EXPECT_FALSE(service_->ResumeSession(again, token));  // once
  EXPECT_EQ(service_->Status().detached_sessions, 0u);

  // Freed after the restart: gone from the kernel, charges given back.
  ASSERT_TRUE(service_->FreeMapping(again, kbuf->mapping.id));
  EXPECT_EQ(model_.LockedBytes(), locked - 2 * kMiB);
  EXPECT_FALSE(store_.fds.contains("m-" + std::to_string(kbuf->mapping.id)));
  service_->CloseSession(again.session);  // the resumed mapping goes with it
  EXPECT_EQ(model_.LockedBytes(), locked - 3 * kMiB);
  EXPECT_EQ(service_->Status().locked_bytes, 0u);
}

TEST_F(ReadoptTest, AnUnnamedContainerNotResumedInTimeIsReleased) {
  Caller user = Open(kUser);
  auto c = service_->CreateContainer(user, {kEdu}, "", {});
  ASSERT_TRUE(c);
  ASSERT_TRUE(service_->Alloc(user, Alloc(c->id, kMiB, ""), {}));
  auto report = Restart(Crash(), std::chrono::seconds(0));
  EXPECT_EQ(report.containers, 1u);
  EXPECT_EQ(service_->Status().detached_sessions, 1u);
  EXPECT_EQ(service_->ReleaseExpiredSessions(), std::nullopt);
  const StatusView s = service_->Status();
  EXPECT_EQ(s.containers, 0u);
  EXPECT_EQ(s.mappings, 0u);
  EXPECT_EQ(s.detached_sessions, 0u);
  EXPECT_EQ(model_.LockedBytes(), 0u);
  EXPECT_TRUE(store_.fds.empty());  // its fds left the store
}

TEST_F(ReadoptTest, WhatDoesNotMatchTheKernelIsReleasedNotTrusted) {
  Caller user = Open(kUser);
  auto ring = service_->CreateContainer(user, {kEdu}, "ring", {});
  ASSERT_TRUE(ring);
  auto kept = service_->Alloc(user, Alloc(ring->id, kMiB, "kept"), {});
  auto lost = service_->Alloc(user, Alloc(ring->id, kMiB, "lost"), {});
  auto moved = service_->Alloc(user, Alloc(ring->id, kMiB, "moved"), {});
  ASSERT_TRUE(kept && lost && moved);
  const uint64_t locked = model_.LockedBytes();
  lifecycle::StateRecord record = Crash();
  store_.fds.erase("m-" + std::to_string(lost->mapping.id));  // its memory did not come back
  for (auto& m : record.mappings) {
    if (m.id == moved->mapping.id) {
      m.iova += 1ULL << 32;  // the record says somewhere the kernel has nothing
      for (auto& e : m.entries) {
        e.iova += 1ULL << 32;
      }
    }
  }
  auto report = Restart(record);
  EXPECT_EQ(report.mappings, 1u);
  EXPECT_EQ(report.released_mappings, 2u);
  EXPECT_EQ(report.stray_bytes, kMiB);  // "moved"'s real entry: nobody's now, unmapped
  EXPECT_EQ(model_.LockedBytes(), locked - 2 * kMiB);
  auto list = service_->ListMappings(Open(kUser), std::nullopt);
  ASSERT_TRUE(list);
  ASSERT_EQ(list->size(), 1u);
  EXPECT_EQ((*list)[0].id, kept->mapping.id);
  EXPECT_EQ(service_->Status().locked_bytes, kMiB);
  EXPECT_FALSE(store_.fds.contains("m-" + std::to_string(moved->mapping.id)));
}

TEST_F(ReadoptTest, AGracefulHandOverIsTakenOverLikeACrash) {
  Caller user = Open(kUser);
  auto ring = service_->CreateContainer(user, {kEdu}, "ring", {});
  ASSERT_TRUE(ring);
  auto kbuf = service_->Alloc(user, Alloc(ring->id, 2 * kMiB, "kbuf"), {});
  ASSERT_TRUE(kbuf);
  Fill(*kbuf, 0x77);
  const uint64_t locked = model_.LockedBytes();
  lifecycle::StateRecord record = service_->SnapshotState();
  a_kernel_->StoreHoldsCopies();
  EXPECT_EQ(service_->HandOver(), 1u);
  EXPECT_EQ(service_->Status().containers, 0u);
  EXPECT_EQ(model_.LockedBytes(), locked);  // invalidated, still mapped and pinned
  service_.reset();
  auto report = Restart(record);
  EXPECT_EQ(report.mappings, 1u);
  EXPECT_EQ(report.released_mappings, 0u);
  EXPECT_EQ(DeviceReads(ContainerFd(ring->id), kbuf->mapping.iova), 0x77);
  EXPECT_EQ(model_.LockedBytes(), locked);
}

TEST_F(ReadoptTest, IdsHandedOutBeforeTheRestartAreNeverHandedOutAgain) {
  Caller user = Open(kUser);
  auto ring = service_->CreateContainer(user, {kEdu}, "ring", {});
  ASSERT_TRUE(ring);
  auto freed = service_->Alloc(user, Alloc(ring->id, kMiB, "freed"), {});
  ASSERT_TRUE(freed);
  ASSERT_TRUE(service_->FreeMapping(user, freed->mapping.id));
  Restart(Crash());
  Caller again = Open(kUser);
  auto fresh = service_->Alloc(again, Alloc(ring->id, kMiB, "fresh"), {});
  ASSERT_TRUE(fresh) << fresh.error().error.message();
  EXPECT_NE(fresh->mapping.id, freed->mapping.id);
  auto c2 = service_->CreateContainer(Open(0), {kIvshmem}, "", {});
  ASSERT_TRUE(c2) << c2.error().error.message();
  EXPECT_GT(c2->id, ring->id);
  EXPECT_GT(again.session, ring->id);
}

// The state record is written behind the service: a vfiod killed right after
// its replies leaves a record that does not name what they announced. The
// objects' own records bring those back.
TEST_F(ReadoptTest, WhatARepliedCallMadeSurvivesACrashBeforeTheStateRecord) {
  Caller user = Open(kUser);
  auto ring = service_->CreateContainer(user, {kEdu}, "ring", {});
  ASSERT_TRUE(ring);
  auto early = service_->Alloc(user, Alloc(ring->id, kMiB, "early"), {});
  ASSERT_TRUE(early);
  lifecycle::StateRecord last = service_->SnapshotState();  // the last one written
  last.generation = 3;
  service_->RecordStored(last);
  // Replied to, never in a state record: a mapping in the old container, and
  // an unnamed container with an unnamed mapping.
  auto late = service_->Alloc(user, Alloc(ring->id, 2 * kMiB, "late"), {});
  ASSERT_TRUE(late);
  Caller root = Open(0);
  auto scratch = service_->CreateContainer(root, {kIvshmem}, "", {});
  ASSERT_TRUE(scratch) << scratch.error().error.message();
  auto loose = service_->Alloc(root, Alloc(scratch->id, kMiB, ""), {});
  ASSERT_TRUE(loose) << loose.error().error.message();
  Fill(*late, 0x3c);
  Fill(*loose, 0xe1);
  const std::string token = service_->SessionToken(root.session);
  const uint64_t locked = model_.LockedBytes();
  (void)Crash();

  std::optional<lifecycle::StateRecord> record = last;
  const std::vector<lifecycle::NamedFd> own = store_.OwnRecords();
  EXPECT_EQ(own.size(), 3u);  // the early ones were settled by the last record
  lifecycle::MergeReport merged = lifecycle::MergeObjectRecords(record, own);
  EXPECT_TRUE(merged.refused.empty()) << merged.refused[0];
  EXPECT_EQ(merged.containers, 1u);
  EXPECT_EQ(merged.mappings, 2u);
  auto report = Restart(*record);
  EXPECT_EQ(report.containers, 2u);
  EXPECT_EQ(report.mappings, 3u);
  EXPECT_EQ(report.released_containers + report.released_mappings + report.stray_bytes, 0u);
  EXPECT_EQ(model_.LockedBytes(), locked);
  Caller again = Open(kUser);
  auto info = service_->MappingInfo(again, late->mapping.id);
  ASSERT_TRUE(info) << info.error().error.message();
  EXPECT_EQ(info->iova, late->mapping.iova);
  EXPECT_EQ(DeviceReads(ContainerFd(ring->id), late->mapping.iova + 7), 0x3c);
  EXPECT_EQ(DeviceReads(ContainerFd(scratch->id), loose->mapping.iova), 0xe1);
  auto resumed = service_->ResumeSession(Open(0), token);
  ASSERT_TRUE(resumed) << resumed.error().error.message();
  EXPECT_EQ(resumed->containers, 1u);
  EXPECT_EQ(resumed->mappings, 1u);
  // The taken-over own records leave the store with the next state record.
  service_->KeepObjectRecords({"r-c-" + std::to_string(scratch->id)});
  service_->RecordStored(service_->SnapshotState());
  EXPECT_FALSE(store_.fds.contains("r-c-" + std::to_string(scratch->id)));
}

TEST_F(ReadoptTest, OwnRecordsComeBeforeTheReplyAndGoWithTheStateRecordOrTheObject) {
  Caller user = Open(kUser);
  auto ring = service_->CreateContainer(user, {kEdu}, "ring", {});
  ASSERT_TRUE(ring);
  const std::string c = "c-" + std::to_string(ring->id);
  EXPECT_TRUE(store_.fds.contains("r-" + c));
  auto kbuf = service_->Alloc(user, Alloc(ring->id, kMiB, "kbuf"), {});
  auto gone = service_->Alloc(user, Alloc(ring->id, kMiB, "gone"), {});
  ASSERT_TRUE(kbuf && gone);
  const std::string m = "m-" + std::to_string(kbuf->mapping.id);
  const std::string g = "m-" + std::to_string(gone->mapping.id);
  ASSERT_TRUE(store_.fds.contains("r-" + m));
  // An own record describes its object alone, as the state record would.
  auto bytes = lifecycle::ReadSealedMemfd(store_.fds.at("r-" + m).get());
  ASSERT_TRUE(bytes);
  auto own = lifecycle::DecodeStateRecord(*bytes);
  ASSERT_TRUE(own) << own.error().message();
  ASSERT_EQ(own->mappings.size(), 1u);
  const lifecycle::StateRecord state = service_->SnapshotState();
  for (const lifecycle::MappingRecord& r : state.mappings) {
    if (r.id == kbuf->mapping.id) {
      EXPECT_EQ(own->mappings[0], r);
    }
  }
  // Freed: the fd and its own record go together.
  ASSERT_TRUE(service_->FreeMapping(user, gone->mapping.id));
  EXPECT_FALSE(store_.fds.contains(g));
  EXPECT_FALSE(store_.fds.contains("r-" + g));
  // A state record that describes them settles the rest; the fds stay.
  service_->RecordStored(state);
  EXPECT_FALSE(store_.fds.contains("r-" + c));
  EXPECT_FALSE(store_.fds.contains("r-" + m));
  EXPECT_TRUE(store_.fds.contains(c));
  EXPECT_TRUE(store_.fds.contains(m));
}

// A peer-to-peer mapping keeps no fd in the store: its device is opened again
// through the container's group, the BAR mmapped anew and the entries
// re-pointed at it, so the other device's DMA goes on to the same BAR.
TEST_F(ReadoptTest, ABarMappingIsTakenOverThroughItsDevice) {
  Caller root = Open(0);
  auto c = service_->CreateContainer(root, {kIvshmem}, "p2p", {});
  ASSERT_TRUE(c) << c.error().error.message();
  auto bar = service_->MapBar(root, MapBarRequest{c->id, kIvshmem, 0, {}, "bar0"});
  ASSERT_TRUE(bar) << bar.error().error.message();
  DeviceWrites(ContainerFd(c->id), bar->mapping.iova + 64, 0x6b);
  const std::vector<std::pair<uint64_t, uint64_t>> entries = Entries(ContainerFd(c->id));
  lifecycle::StateRecord record = Crash();
  ASSERT_EQ(record.mappings.size(), 1u);
  EXPECT_EQ(record.mappings[0].bar_bdf, kIvshmem);
  EXPECT_FALSE(record.mappings[0].entries.empty());
  auto report = Restart(record);
  EXPECT_EQ(report.mappings, 1u);
  EXPECT_EQ(report.released_mappings + report.stray_bytes, 0u);
  EXPECT_EQ(Entries(ContainerFd(c->id)), entries);
  EXPECT_EQ(DeviceReads(ContainerFd(c->id), bar->mapping.iova + 64), 0x6b);
  auto info = service_->MappingInfo(Open(0), bar->mapping.id);
  ASSERT_TRUE(info) << info.error().error.message();
  EXPECT_TRUE(info->mmio);
  EXPECT_EQ(info->name, "bar0");
  // And again: the new vfiod knows where its BAR came from.
  lifecycle::StateRecord second = service_->SnapshotState();
  ASSERT_EQ(second.mappings.size(), 1u);
  EXPECT_EQ(second.mappings[0].bar_bdf, kIvshmem);
  EXPECT_EQ(second.mappings[0].entries, record.mappings[0].entries);
  ASSERT_TRUE(service_->FreeMapping(Open(0), bar->mapping.id));
  EXPECT_TRUE(Entries(ContainerFd(c->id)).empty());
}

/// A memfd of `size` bytes, `byte` at `at`.
UniqueFd MemfdWith(uint64_t size, uint64_t at, unsigned char byte) {
  UniqueFd fd(::memfd_create("region", MFD_CLOEXEC | MFD_ALLOW_SEALING));
  EXPECT_EQ(::ftruncate(fd.get(), static_cast<off_t>(size)), 0);
  EXPECT_EQ(::pwrite(fd.get(), &byte, 1, static_cast<off_t>(at)), 1);
  return fd;
}

// A registered region comes back under its id to the session that resumes
// (so the client maps further slices of it), and its slices share its memory.
TEST_F(ReadoptTest, RegisteredRegionsAndTheirSlicesComeBack) {
  Caller user = Open(kUser);
  auto ring = service_->CreateContainer(user, {kEdu}, "ring", {});
  ASSERT_TRUE(ring);
  // [2M, 6M) of the file is the region; the slice is [1M, 2M) of the region.
  auto region = service_->RegisterRegion(
      user, RegisterRequest{MemfdWith(8 * kMiB, 3 * kMiB + 5, 0x4d), 2 * kMiB, 4 * kMiB});
  ASSERT_TRUE(region) << region.error().error.message();
  EXPECT_TRUE(store_.fds.contains("rg-" + std::to_string(region->id)));
  MapFdRequest slice;
  slice.container = ring->id;
  slice.region = region->id;
  slice.offset = kMiB;
  slice.size = kMiB;
  slice.name = "slice";
  auto mapped = service_->MapFd(user, std::move(slice), {});
  ASSERT_TRUE(mapped) << mapped.error().error.message();
  EXPECT_FALSE(store_.fds.contains("m-" + std::to_string(mapped->mapping.id)));  // the region's
  EXPECT_EQ(DeviceReads(ContainerFd(ring->id), mapped->mapping.iova + 5), 0x4d);
  const std::string token = service_->SessionToken(user.session);
  const StatusView before = service_->Status();

  auto report = Restart(Crash());
  EXPECT_EQ(report.regions, 1u);
  EXPECT_EQ(report.mappings, 1u);
  EXPECT_EQ(report.released_regions + report.released_mappings + report.stray_bytes, 0u);
  EXPECT_EQ(DeviceReads(ContainerFd(ring->id), mapped->mapping.iova + 5), 0x4d);
  EXPECT_EQ(service_->Status().locked_bytes, before.locked_bytes);
  Caller again = Open(kUser);
  // The container 4, the region 1, the slice 2 (its own record; its memory is the region's).
  EXPECT_EQ(service_->StatusFor(again).stored_fds_charged, 7u);
  MapFdRequest more;
  more.container = ring->id;
  more.region = region->id;
  more.size = kMiB;
  EXPECT_FALSE(service_->MapFd(again, std::move(more), {}));  // not this session's yet
  auto resumed = service_->ResumeSession(again, token);
  ASSERT_TRUE(resumed) << resumed.error().error.message();
  EXPECT_EQ(resumed->regions, 1u);
  ASSERT_EQ(service_->ListRegions(again).size(), 1u);
  MapFdRequest next;
  next.container = ring->id;
  next.region = region->id;
  next.offset = kMiB;
  next.size = kMiB;
  auto second = service_->MapFd(again, std::move(next), {});
  ASSERT_TRUE(second) << second.error().error.message();
  EXPECT_EQ(DeviceReads(ContainerFd(ring->id), second->mapping.iova + 5), 0x4d);
}

// Unregistered, a region lives on in its slices: they come back with its
// memory, but its id is not registered again.
TEST_F(ReadoptTest, AnUnregisteredRegionLivesOnInItsSlicesOnly) {
  Caller user = Open(kUser);
  auto ring = service_->CreateContainer(user, {kEdu}, "ring", {});
  ASSERT_TRUE(ring);
  auto region = service_->RegisterRegion(user, RegisterRequest{MemfdWith(4 * kMiB, 7, 0x2e), 0, 0});
  ASSERT_TRUE(region);
  MapFdRequest slice;
  slice.container = ring->id;
  slice.region = region->id;
  slice.size = kMiB;
  slice.name = "kept";
  auto mapped = service_->MapFd(user, std::move(slice), {});
  ASSERT_TRUE(mapped);
  ASSERT_TRUE(service_->UnregisterRegion(user, region->id));
  auto report = Restart(Crash());
  EXPECT_EQ(report.regions, 1u);
  EXPECT_EQ(report.mappings, 1u);
  EXPECT_EQ(report.detached_sessions, 0u);  // nothing unnamed is left to resume
  EXPECT_EQ(DeviceReads(ContainerFd(ring->id), mapped->mapping.iova + 7), 0x2e);
  // Once its last slice is freed, its fd leaves the store with the next record.
  ASSERT_TRUE(service_->FreeMapping(Open(kUser), mapped->mapping.id));
  const std::string name = "rg-" + std::to_string(region->id);
  EXPECT_TRUE(store_.fds.contains(name));
  service_->RecordStored(service_->SnapshotState());
  EXPECT_FALSE(store_.fds.contains(name));
}

// The device fds vfiod holds are stored too: the next vfiod takes them over
// instead of opening the devices again (a reopen of a device nobody else
// holds would reset it under its client), arms their request IRQs, and so
// hears the kernel ask for a device a client still holds. Nobody's session
// is known for a named container after a restart: the owner's sessions are
// told.
TEST_F(ReadoptTest, HeldDevicesAreTakenOverAndTheirReleaseRequestsHeard) {
  Caller user = Open(kUser);
  auto c = service_->CreateContainer(user, {kEdu}, "ring", {});
  ASSERT_TRUE(c) << c.error().error.message();
  auto device = service_->OpenDevice(user, c->id, kEdu);
  ASSERT_TRUE(device) << device.error().error.message();
  const std::string name = lifecycle::DeviceFdName(c->id, kEdu);
  EXPECT_TRUE(store_.fds.contains(name));
  lifecycle::StateRecord record = Crash();
  ASSERT_EQ(record.containers.size(), 1u);
  ASSERT_EQ(record.containers[0].devices.size(), 1u);
  EXPECT_EQ(record.containers[0].devices[0].bdf, kEdu);
  EXPECT_EQ(record.containers[0].devices[0].fd_name, name);

  const uint64_t opens = model_.IoctlCount("VFIO_GROUP_GET_DEVICE_FD");
  auto report = Restart(record);
  EXPECT_EQ(report.containers, 1u);
  EXPECT_EQ(service_->WatchedRequests(), 1u);  // armed with no device.open since
  std::mutex mu;
  std::vector<std::pair<SessionId, ReleaseNotice>> told;
  service_->SetReleaseNotifier([&](SessionId s, const ReleaseNotice& n) {
    std::lock_guard lock(mu);
    told.emplace_back(s, n);
  });
  Caller again = Open(kUser);  // the client, connected to the new vfiod
  Caller other = Open(kOther);
  auto done = model_.SetDriver(kEdu, "");  // the kernel asks: the device is held
  ASSERT_FALSE(done);
  EXPECT_EQ(done.error().code, EWOULDBLOCK);
  for (int i = 0; i < 2000; ++i) {  // a hang guard, not a timing assert
    {
      std::lock_guard lock(mu);
      if (!told.empty()) {
        break;
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  service_->SetReleaseNotifier({});
  ASSERT_EQ(told.size(), 1u);  // the owner's session only, not kOther's
  EXPECT_EQ(told[0].first, again.session);
  EXPECT_EQ(told[0].second.kind, ReleaseNotice::Kind::kRequested);
  EXPECT_EQ(told[0].second.bdf, kEdu);
  EXPECT_EQ(told[0].second.container, c->id);
  // Taken over, not opened again; and the stored fd is still the store's.
  EXPECT_EQ(model_.IoctlCount("VFIO_GROUP_GET_DEVICE_FD"), opens);
  lifecycle::StateRecord next = service_->SnapshotState();
  ASSERT_EQ(next.containers.size(), 1u);
  EXPECT_EQ(next.containers[0].devices, record.containers[0].devices);
  // Destroyed: the device's name leaves the store with the container's.
  ASSERT_TRUE(service_->DestroyContainer(Open(kUser), c->id));
  EXPECT_FALSE(store_.fds.contains(name));
  (void)other;
}

}  // namespace
}  // namespace vfiod::service
