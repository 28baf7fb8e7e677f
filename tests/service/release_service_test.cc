// Release requests in the service, on the model kernel: the kernel asks for a
// device back (the model's unbind that "would block" signals the device's
// request IRQ, as vfio_unregister_group_dev does), the sessions with a stake
// in its container are told, and after the grace period the container is
// revoked: unmapped, vfiod's fds closed, charges given back, nothing leaked.
#include <gtest/gtest.h>

#include <condition_variable>
#include <mutex>

#include "model_service.h"
#include "support/open_fds.h"

namespace vfiod::service {
namespace {

using model_service::kEdu;
using model_service::kIvshmem;
using ::vfiod::testing::CountOpenFds;
using Kind = ReleaseNotice::Kind;

constexpr uid_t kUser = 1000;

/// What the service told, by session, in order.
class Notices {
 public:
  void Add(SessionId s, const ReleaseNotice& n) {
    std::lock_guard lock(mu_);
    got_.emplace_back(s, n);
    changed_.notify_all();
  }
  /// Waits (at most 20 s: a hang guard, not a timing assert) until `count`
  /// notices of `kind` arrived; returns them.
  std::vector<std::pair<SessionId, ReleaseNotice>> Await(Kind kind, size_t count) {
    std::unique_lock lock(mu_);
    changed_.wait_for(lock, std::chrono::seconds(20), [&] { return Of(kind).size() >= count; });
    return Of(kind);
  }
  std::vector<std::pair<SessionId, ReleaseNotice>> Of(Kind kind) const {
    std::vector<std::pair<SessionId, ReleaseNotice>> out;
    for (const auto& n : got_) {
      if (n.second.kind == kind) {
        out.push_back(n);
      }
    }
    return out;
  }
  size_t size() {
    std::lock_guard lock(mu_);
    return got_.size();
  }

 private:
  mutable std::mutex mu_;
  std::condition_variable changed_;
  std::vector<std::pair<SessionId, ReleaseNotice>> got_;  // guarded by mu_
};

class ReleaseServiceTest : public model_service::ModelServiceTest {
 protected:
  ~ReleaseServiceTest() override {
    if (service_) {
      service_->SetReleaseNotifier({});  // notices_ goes before the service
    }
  }
  void StartWithGrace(uint32_t seconds) {
    Config config = model_service::EduConfig(
        kUser, Quota{.locked_bytes = 4 << 20, .mappings = 4, .containers = 2});
    config.device.release_grace_seconds = seconds;
    Start(config);
    service_->SetReleaseNotifier(
        [this](SessionId s, const ReleaseNotice& n) { notices_.Add(s, n); });
    baseline_model_fds_ = model_.OpenFdCount();
    baseline_fds_ = CountOpenFds();
  }
  ContainerId Create(const Caller& who, const std::vector<std::string>& bdfs) {
    auto c = service_->CreateContainer(who, bdfs, "");
    EXPECT_TRUE(c.has_value()) << c.error().error.message();
    return c ? c->id : 0;
  }
  MappingId Alloc(const Caller& who, ContainerId c, uint64_t size) {
    AllocRequest r;
    r.container = c;
    r.size = size;
    auto m = service_->Alloc(who, r, {});
    EXPECT_TRUE(m.has_value()) << m.error().error.message();
    return m ? m->mapping.id : 0;
  }
  UniqueFd OpenDevice(const Caller& who, ContainerId c, const char* bdf) {
    auto d = service_->OpenDevice(who, c, bdf);
    EXPECT_TRUE(d.has_value()) << d.error().error.message();
    return d ? std::move(d->fd) : UniqueFd();
  }
  /// The kernel is asked to unbind `bdf` from vfio-pci: it signals the
  /// request and would block (EWOULDBLOCK) while a device fd is open; true
  /// once nothing holds it (the unbind went through; it is bound back).
  bool Unbind(const char* bdf) {
    auto done = model_.SetDriver(bdf, "");
    if (!done) {
      EXPECT_EQ(done.error().code, EWOULDBLOCK) << done.error().message();
      return false;
    }
    EXPECT_TRUE(model_.SetDriver(bdf, kernel::kVfioPciDriver));
    return true;
  }
  /// Everything vfiod held is gone: no container, mapping, charge or lingering
  /// group; the model's fds, the process's fds and the watcher's eventfds are
  /// back to the baseline.
  void ExpectBaseline() {
    Caller look = Open(0);
    StatusView s = service_->StatusFor(look);  // re-checks lingering groups
    EXPECT_EQ(s.containers, 0u);
    EXPECT_EQ(s.mappings, 0u);
    EXPECT_EQ(s.locked_bytes, 0u);
    EXPECT_TRUE(s.lingering.empty());
    EXPECT_EQ(model_.LockedBytes(), 0u);
    EXPECT_EQ(service_->WatchedRequests(), 0u);
    EXPECT_EQ(model_.OpenFdCount(), baseline_model_fds_);
    EXPECT_EQ(CountOpenFds(), baseline_fds_);
    service_->CloseSession(look.session);
  }

  Notices notices_;
  size_t baseline_model_fds_ = 0;
  int baseline_fds_ = 0;
};

TEST_F(ReleaseServiceTest, TheHolderIsToldAndTheContainerRevokedAfterTheGrace) {
  StartWithGrace(1);
  Caller a = Open(kUser);
  Caller bystander = Open(kUser);
  const ContainerId c = Create(a, {kEdu});
  const MappingId m = Alloc(a, c, 1 << 20);
  UniqueFd dev = OpenDevice(a, c, kEdu);
  ASSERT_TRUE(dev);
  EXPECT_EQ(service_->WatchedRequests(), 1u);  // armed when vfiod opened edu

  EXPECT_FALSE(Unbind(kEdu));  // the request; Linux would block here
  auto requested = notices_.Await(Kind::kRequested, 1);
  ASSERT_EQ(requested.size(), 1u);
  EXPECT_EQ(requested[0].first, a.session);  // the bystander hears nothing
  EXPECT_EQ(requested[0].second.bdf, kEdu);
  EXPECT_EQ(requested[0].second.container, c);
  EXPECT_EQ(requested[0].second.grace_ms, 1000u);

  auto revoked = notices_.Await(Kind::kRevoked, 1);
  ASSERT_EQ(revoked.size(), 1u);
  EXPECT_EQ(revoked[0].first, a.session);
  EXPECT_EQ(revoked[0].second.container, c);
  EXPECT_EQ(revoked[0].second.unmapped_bytes, 1u << 20);
  EXPECT_EQ(revoked[0].second.mappings, std::vector<MappingId>{m});
  EXPECT_NE(revoked[0].second.reason.find("grace period"), std::string::npos);
  EXPECT_TRUE(service_->ListContainers(a).empty());
  EXPECT_EQ(service_->MappingInfo(a, m).error().kind, ErrorKind::kNotFound);
  EXPECT_EQ(model_.LockedBytes(), 0u);
  // vfiod let go of everything; the client's fd alone holds the device (and
  // its group lingers, charged to it), so the unbind still waits.
  StatusView held = service_->StatusFor(a);
  ASSERT_EQ(held.lingering.size(), 1u);
  EXPECT_EQ(held.lingering[0].container, c);
  EXPECT_FALSE(Unbind(kEdu));  // asks again: vfiod no longer listens
  EXPECT_EQ(notices_.size(), 2u);

  dev.reset();  // the client library closes its fd on the notice
  EXPECT_TRUE(Unbind(kEdu));
  service_->CloseSession(a.session);
  service_->CloseSession(bystander.session);
  ExpectBaseline();
}

TEST_F(ReleaseServiceTest, NoGraceRevokesAtOnceAndTheDeviceServesTheNextContainer) {
  StartWithGrace(0);
  Caller a = Open(kUser);
  const ContainerId first = Create(a, {kEdu});
  Alloc(a, first, 64 << 10);
  UniqueFd dev = OpenDevice(a, first, kEdu);
  EXPECT_FALSE(Unbind(kEdu));
  ASSERT_EQ(notices_.Await(Kind::kRevoked, 1).size(), 1u);
  EXPECT_EQ(notices_.Of(Kind::kRequested)[0].second.grace_ms, 0u);
  dev.reset();

  // A second request, for the device in a new container, is heard again.
  const ContainerId second = Create(a, {kEdu});
  ASSERT_NE(second, first);
  dev = OpenDevice(a, second, kEdu);
  EXPECT_FALSE(Unbind(kEdu));
  auto revoked = notices_.Await(Kind::kRevoked, 2);
  ASSERT_EQ(revoked.size(), 2u);
  EXPECT_EQ(revoked[1].second.container, second);
  EXPECT_EQ(revoked[1].second.unmapped_bytes, 0u);
  dev.reset();
  EXPECT_TRUE(Unbind(kEdu));
  service_->CloseSession(a.session);
  ExpectBaseline();
}

TEST_F(ReleaseServiceTest, AClientThatLeavesDuringTheGraceIsNotRevokedLater) {
  StartWithGrace(3600);
  Caller a = Open(kUser);
  const ContainerId c = Create(a, {kEdu});
  Alloc(a, c, 64 << 10);
  UniqueFd dev = OpenDevice(a, c, kEdu);
  EXPECT_FALSE(Unbind(kEdu));
  ASSERT_EQ(notices_.Await(Kind::kRequested, 1).size(), 1u);
  // The client closes its fd and goes: its session's container goes with it,
  // the pending revoke is dropped, and the unbind goes through.
  dev.reset();
  service_->CloseSession(a.session);
  EXPECT_TRUE(Unbind(kEdu));
  EXPECT_TRUE(notices_.Of(Kind::kRevoked).empty());
  ExpectBaseline();
}

// A BAR vfiod maps for peer DMA keeps the device open in vfiod: a request for
// that device ends in the mapping being freed, and its owner (a session other
// than the container's) is told with the creator.
TEST_F(ReleaseServiceTest, ABarMappingOfTheDeviceIsFreedAndItsOwnerTold) {
  StartWithGrace(0);
  Caller creator = Open(0);
  Caller mapper = Open(0);
  Caller bystander = Open(0);
  const ContainerId c = Create(creator, {kEdu, kIvshmem});
  auto bar = service_->MapBar(mapper, MapBarRequest{c, kIvshmem, 0, {}, ""});
  ASSERT_TRUE(bar.has_value()) << bar.error().error.message();

  EXPECT_FALSE(Unbind(kIvshmem));  // vfiod's own fd (the BAR's) holds it
  auto revoked = notices_.Await(Kind::kRevoked, 2);
  ASSERT_EQ(revoked.size(), 2u);
  std::map<SessionId, std::vector<MappingId>> told;
  for (const auto& [session, notice] : revoked) {
    EXPECT_EQ(notice.bdf, kIvshmem);
    told[session] = notice.mappings;
  }
  EXPECT_EQ(told.size(), 2u);
  EXPECT_TRUE(told.contains(creator.session));
  EXPECT_EQ(told[mapper.session], std::vector<MappingId>{bar->mapping.id});
  EXPECT_FALSE(told.contains(bystander.session));
  EXPECT_TRUE(Unbind(kIvshmem));  // nothing holds it now: no client fd was handed out
  for (const Caller& who : {creator, mapper, bystander}) {
    service_->CloseSession(who.session);
  }
  ExpectBaseline();
}

}  // namespace
}  // namespace vfiod::service
