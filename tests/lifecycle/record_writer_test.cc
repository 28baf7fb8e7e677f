// RecordWriter: every change ends up in a stored record, generations grow by
// one per record, and failures are reported without stopping the writer.
#include "lifecycle/record_writer.h"

#include <gtest/gtest.h>

#include <atomic>
#include <mutex>
#include <vector>

namespace vfiod::lifecycle {
namespace {

struct Sink {
  std::mutex mu;
  std::vector<StateRecord> stored;
  std::atomic<uint64_t> state{0};  // what the snapshot reports, as a container id
  bool fail = false;
};

RecordWriter::Snapshot SnapshotOf(Sink& sink) {
  return [&sink] {
    StateRecord r;
    ContainerRecord c;
    c.id = sink.state.load();
    r.containers.push_back(c);
    return r;
  };
}

RecordWriter::Store StoreInto(Sink& sink) {
  return [&sink](const StateRecord& r) -> Result<bool> {
    std::lock_guard lock(sink.mu);
    if (sink.fail) {
      return Fail(EAGAIN, "store", "queue full");
    }
    sink.stored.push_back(r);
    return true;
  };
}

TEST(RecordWriter, NothingIsWrittenWithoutAChange) {
  Sink sink;
  {
    RecordWriter writer(SnapshotOf(sink), StoreInto(sink), nullptr, 5);
    writer.Flush();
    EXPECT_EQ(writer.writes(), 0u);
  }
  EXPECT_TRUE(sink.stored.empty());
}

TEST(RecordWriter, TheLastRecordHoldsTheLastChangeAndGenerationsGrowByOne) {
  Sink sink;
  RecordWriter writer(SnapshotOf(sink), StoreInto(sink), nullptr, 7);
  for (uint64_t i = 1; i <= 200; ++i) {
    sink.state = i;
    writer.Changed();
  }
  writer.Flush();
  std::lock_guard lock(sink.mu);
  ASSERT_FALSE(sink.stored.empty());
  EXPECT_LE(sink.stored.size(), 200u);  // coalesced, never more than asked
  EXPECT_EQ(sink.stored.back().containers.front().id, 200u);
  for (size_t i = 0; i < sink.stored.size(); ++i) {
    EXPECT_EQ(sink.stored[i].generation, 7 + i);
  }
}

TEST(RecordWriter, TheDestructorWritesWhatIsPending) {
  Sink sink;
  {
    RecordWriter writer(SnapshotOf(sink), StoreInto(sink), nullptr, 1);
    sink.state = 3;
    writer.Changed();
  }
  ASSERT_FALSE(sink.stored.empty());
  EXPECT_EQ(sink.stored.back().containers.front().id, 3u);
}

TEST(RecordWriter, AFailedStoreIsReportedAndTheNextChangeTriesAgain) {
  Sink sink;
  sink.fail = true;
  std::vector<int> errors;
  RecordWriter writer(
      SnapshotOf(sink), StoreInto(sink), [&errors](const Error& e) { errors.push_back(e.code); },
      1);
  writer.Changed();
  writer.Flush();
  EXPECT_EQ(errors, std::vector<int>{EAGAIN});
  {
    std::lock_guard lock(sink.mu);
    sink.fail = false;
  }
  sink.state = 9;
  writer.Changed();
  writer.Flush();
  std::lock_guard lock(sink.mu);
  ASSERT_EQ(sink.stored.size(), 1u);
  EXPECT_EQ(sink.stored[0].containers.front().id, 9u);
  EXPECT_EQ(sink.stored[0].generation, 2u);
}

}  // namespace
}  // namespace vfiod::lifecycle
