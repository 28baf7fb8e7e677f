// The service's key events (journal/event.h) on the model kernel: each one
// carries the uid, container, mapping and devices it concerns, and its text
// line keeps the form it always had.
#include <gtest/gtest.h>

#include <cstdio>

#include "model_service.h"
#include "support/recording_sink.h"

namespace vfiod::service {
namespace {

using journal::Event;
using journal::Kind;
using model_service::EduConfig;
using model_service::kEdu;

constexpr uid_t kUser = 1000;

class EventsServiceTest : public model_service::ModelServiceTest {
 protected:
  EventsServiceTest() {
    Start(EduConfig(kUser, Quota{.locked_bytes = 4 << 20, .mappings = 2, .containers = 1}));
  }
  /// The one event of `kind` recorded so far (a failure if there are more or none).
  Event Only(Kind kind) {
    std::vector<Event> of = events_.Of(kind);
    EXPECT_EQ(of.size(), 1u) << journal::InfoOf(kind).name;
    return of.empty() ? Event{} : of[0];
  }

  journal::RecordingSink events_;
  journal::ScopedSink installed_{events_};
};

TEST_F(EventsServiceTest, AContainersLifeIsFourEventsWithItsFields) {
  Caller a = Open(kUser);
  auto c = service_->CreateContainer(a, {kEdu}, "");
  ASSERT_TRUE(c.has_value()) << c.error().error.message();
  Event created = Only(Kind::kContainerCreated);
  EXPECT_EQ(created.message,
            "container " + std::to_string(c->id) + " created by uid 1000 (1 groups)");
  EXPECT_EQ(created.uid, kUser);
  EXPECT_EQ(created.session, a.session);
  EXPECT_EQ(created.container, c->id);
  EXPECT_EQ(created.bdfs, std::vector<std::string>{kEdu});

  AllocRequest r;
  r.container = c->id;
  r.size = 1 << 20;
  auto m = service_->Alloc(a, std::move(r), {});
  ASSERT_TRUE(m.has_value()) << m.error().error.message();
  Event mapped = Only(Kind::kMappingCreated);
  char iova[32];
  // As fmt's {:#x} writes it (0x0 for 0, where printf's %#llx gives 0).
  (void)std::snprintf(iova, sizeof iova, "0x%llx",
                      static_cast<unsigned long long>(m->mapping.iova));
  EXPECT_EQ(mapped.message, "mapping " + std::to_string(m->mapping.id) + ": container " +
                                std::to_string(c->id) + " iova " + iova + " size 0x100000 " +
                                m->mapping.backing + " (" + std::to_string(m->mapping.ioctls) +
                                " ioctls)");
  EXPECT_EQ(mapped.uid, kUser);
  EXPECT_EQ(mapped.container, c->id);
  EXPECT_EQ(mapped.mapping, m->mapping.id);
  EXPECT_EQ(mapped.bytes, 1u << 20);
  EXPECT_EQ(mapped.iova, m->mapping.iova);

  ASSERT_TRUE(service_->FreeMapping(a, m->mapping.id).has_value());
  Event freed = Only(Kind::kMappingFreed);
  EXPECT_EQ(freed.uid, kUser);
  EXPECT_EQ(freed.container, c->id);
  EXPECT_EQ(freed.mapping, m->mapping.id);
  EXPECT_EQ(freed.bytes, 1u << 20);  // what the kernel reported unmapped

  ASSERT_TRUE(service_->DestroyContainer(a, c->id).has_value());
  Event destroyed = Only(Kind::kContainerDestroyed);
  EXPECT_EQ(destroyed.message,
            "container " + std::to_string(c->id) + " closed (0 mappings, 0 bytes unmapped)");
  EXPECT_EQ(destroyed.uid, kUser);
  EXPECT_EQ(destroyed.container, c->id);
  EXPECT_EQ(destroyed.bdfs, std::vector<std::string>{kEdu});
  EXPECT_EQ(events_.events().size(), 4u);
}

TEST_F(EventsServiceTest, AFailedMapIsNoMappingEvent) {
  Caller a = Open(kUser);
  auto c = service_->CreateContainer(a, {kEdu}, "");
  ASSERT_TRUE(c.has_value());
  AllocRequest r;
  r.container = c->id;
  r.size = 8 << 20;  // over the 4 MiB quota
  auto m = service_->Alloc(a, std::move(r), {});
  ASSERT_FALSE(m.has_value());
  EXPECT_EQ(m.error().kind, ErrorKind::kQuota);
  EXPECT_TRUE(events_.Of(Kind::kMappingCreated).empty());  // the rpc layer reports the refusal
}

TEST_F(EventsServiceTest, AResetNamesTheDeviceAndWhoAskedForIt) {
  Caller a = Open(kUser);
  auto c = service_->CreateContainer(a, {kEdu}, "");
  ASSERT_TRUE(c.has_value());
  ASSERT_TRUE(service_->ResetDevice(a, kEdu).has_value());
  Event reset = Only(Kind::kDeviceReset);
  EXPECT_EQ(reset.message, std::string(kEdu) + " reset (function) by uid 1000 (container " +
                               std::to_string(c->id) + ")");
  EXPECT_EQ(reset.uid, kUser);
  EXPECT_EQ(reset.container, c->id);
  EXPECT_EQ(reset.bdfs, std::vector<std::string>{kEdu});
}

TEST_F(EventsServiceTest, ClosingASessionDestroysItsContainersWithAnEventEach) {
  Caller a = Open(kUser);
  auto c = service_->CreateContainer(a, {kEdu}, "");
  ASSERT_TRUE(c.has_value());
  service_->CloseSession(a.session);
  Event destroyed = Only(Kind::kContainerDestroyed);
  EXPECT_EQ(destroyed.container, c->id);
  EXPECT_EQ(destroyed.uid, kUser);
}

}  // namespace
}  // namespace vfiod::service
