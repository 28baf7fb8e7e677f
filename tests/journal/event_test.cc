// What a key event becomes in the journal: the fixed fields first, then only
// the fields the event sets, each in the journal's NAME=value form.
#include "journal/event.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <set>

#include "support/recording_sink.h"

namespace vfiod::journal {
namespace {

using ::testing::ElementsAre;

TEST(JournalEventTest, EveryKindHasItsOwnNameAndMessageId) {
  std::set<std::string_view> ids;
  std::set<std::string_view> names;
  for (const KindInfo& info : Kinds()) {
    EXPECT_EQ(info.message_id.size(), 32u) << info.name;
    EXPECT_EQ(info.message_id.find_first_not_of("0123456789abcdef"), std::string_view::npos)
        << info.name << ": " << info.message_id;
    EXPECT_TRUE(ids.insert(info.message_id).second) << "duplicate id of " << info.name;
    EXPECT_TRUE(names.insert(info.name).second) << "duplicate name " << info.name;
    EXPECT_EQ(&InfoOf(info.kind), &info);
  }
  EXPECT_EQ(ids.size(), kKindCount);
}

TEST(JournalEventTest, AMappingEventCarriesItsFieldsInAFixedOrder) {
  Event e{.kind = Kind::kMappingCreated,
          .message = "mapping 7: container 3 iova 0x100000 size 0x200000 memfd (1 ioctls)",
          .uid = 1000,
          .session = 5,
          .container = 3,
          .mapping = 7,
          .bytes = 0x200000,
          .iova = 0x100000};
  EXPECT_THAT(
      JournalFields(e),
      ElementsAre("MESSAGE=mapping 7: container 3 iova 0x100000 size 0x200000 memfd (1 ioctls)",
                  "PRIORITY=6", "SYSLOG_IDENTIFIER=vfiod",
                  "MESSAGE_ID=478d748adf2c400f86230eaf5a65ee7b", "VFIOD_EVENT=mapping_created",
                  "VFIOD_UID=1000", "VFIOD_SESSION=5", "VFIOD_CONTAINER=3", "VFIOD_MAPPING=7",
                  "VFIOD_BYTES=2097152", "VFIOD_IOVA=0x100000"));
}

TEST(JournalEventTest, UnsetFieldsAreLeftOutAndDevicesRepeat) {
  Event e{.kind = Kind::kContainerCreated,
          .message = "container 1 created by uid 0 (2 groups)",
          .uid = 0,
          .container = 1,
          .bdfs = {"0000:00:03.0", "0000:00:04.0"}};
  EXPECT_THAT(JournalFields(e),
              ElementsAre("MESSAGE=container 1 created by uid 0 (2 groups)", "PRIORITY=6",
                          "SYSLOG_IDENTIFIER=vfiod", "MESSAGE_ID=e632dff8e23a4bf38af32cbc7ec61b86",
                          "VFIOD_EVENT=container_created", "VFIOD_UID=0", "VFIOD_CONTAINER=1",
                          "VFIOD_BDF=0000:00:03.0", "VFIOD_BDF=0000:00:04.0"));
}

TEST(JournalEventTest, ARefusalCarriesMethodAndErrno) {
  Event e{.kind = Kind::kKernelError,
          .message = "dma.alloc from uid 1000: Kernel error (-32001): VFIO_IOMMU_MAP_DMA",
          .uid = 1000,
          .pid = 42,
          .method = "dma.alloc",
          .error_number = 28};
  const std::vector<std::string> fields = JournalFields(e);
  EXPECT_TRUE(HasField(fields, "PRIORITY=4"));  // the kind's level: warning
  EXPECT_TRUE(HasField(fields, "VFIOD_PID=42"));
  EXPECT_TRUE(HasField(fields, "VFIOD_METHOD=dma.alloc"));
  EXPECT_TRUE(HasField(fields, "ERRNO=28"));
  EXPECT_EQ(fields.size(), 9u);
}

TEST(JournalEventTest, AnEventMayOverrideItsKindsLevel) {
  Event e{.kind = Kind::kRestartReleased, .message = "x", .level = Level::kError};
  EXPECT_EQ(LevelOf(e), Level::kError);
  EXPECT_TRUE(HasField(JournalFields(e), "PRIORITY=3"));
  e.level.reset();
  EXPECT_EQ(LevelOf(e), Level::kWarning);
}

}  // namespace
}  // namespace vfiod::journal
