// Where events go: under journald one entry per event with the fields of
// JournalFields and nothing through spdlog; otherwise the unchanged plain
// line. Also the JOURNAL_STREAM check that picks between the two.
#include "journal/sink.h"

#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <sstream>
#include <string>

#include "support/recording_sink.h"

namespace vfiod::journal {
namespace {

/// Replaces spdlog's default logger with one writing "<level> <message>"
/// lines into a string, at info level, for one test.
class CapturedLog {
 public:
  CapturedLog() : previous_(spdlog::default_logger()) {
    auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(out_);
    auto logger = std::make_shared<spdlog::logger>("test", sink);
    logger->set_pattern("%l %v");
    logger->set_level(spdlog::level::info);
    spdlog::set_default_logger(logger);
  }
  ~CapturedLog() { spdlog::set_default_logger(previous_); }
  CapturedLog(const CapturedLog&) = delete;
  CapturedLog& operator=(const CapturedLog&) = delete;
  CapturedLog(CapturedLog&&) = delete;
  CapturedLog& operator=(CapturedLog&&) = delete;
  [[nodiscard]] std::string text() const { return out_.str(); }
  void SetLevel(spdlog::level::level_enum level) { spdlog::default_logger()->set_level(level); }

 private:
  std::ostringstream out_;
  std::shared_ptr<spdlog::logger> previous_;
};

/// What the fake sd_journal_sendv received, entry by entry.
std::vector<std::vector<std::string>> g_sent;
int g_send_result = 0;

int FakeSend(const struct iovec* iov, int n) {
  std::vector<std::string> entry;
  for (int i = 0; i < n; ++i) {
    entry.emplace_back(static_cast<const char*>(iov[i].iov_base), iov[i].iov_len);
  }
  g_sent.push_back(std::move(entry));
  return g_send_result;
}

Event Connected() {
  return Event{.kind = Kind::kConnectionOpened,
               .message = "rpc: connection 4 from uid 1000 gid 1000 pid 77",
               .uid = 1000,
               .pid = 77,
               .connection = 4};
}

TEST(JournalSinkTest, AnEventIsOneEntryWithItsFieldsAndNoPlainLine) {
  CapturedLog log;
  g_sent.clear();
  g_send_result = 0;
  JournalSink sink(&FakeSend);
  ScopedSink installed(sink);
  Emit(Connected());
  ASSERT_EQ(g_sent.size(), 1u);
  EXPECT_EQ(g_sent[0], JournalFields(Connected()));
  EXPECT_TRUE(HasField(g_sent[0], "VFIOD_UID=1000"));
  EXPECT_TRUE(HasField(g_sent[0], "MESSAGE_ID=ecc10f2f19c643d6bb69aa90bacd7368"));
  EXPECT_EQ(log.text(), "");  // not logged twice
  EXPECT_EQ(sink.failures(), 0u);
}

TEST(JournalSinkTest, AnEntryTheJournalRefusesGoesToStderr) {
  g_sent.clear();
  g_send_result = -ENOENT;  // no journald socket
  JournalSink sink(&FakeSend);
  ::testing::internal::CaptureStderr();
  sink.Write(Connected());
  const std::string err = ::testing::internal::GetCapturedStderr();
  g_send_result = 0;
  EXPECT_EQ(g_sent.size(), 1u);
  EXPECT_EQ(sink.failures(), 1u);
  EXPECT_EQ(err, "rpc: connection 4 from uid 1000 gid 1000 pid 77\n");
}

TEST(JournalSinkTest, WithoutJournalTheLineIsTheMessageAtItsLevel) {
  CapturedLog log;
  Emit(Connected());  // the default sink: the text sink
  Emit(Event{.kind = Kind::kQuotaRefused, .message = "dma.alloc from uid 5: Quota exceeded"});
  EXPECT_EQ(log.text(),
            "info rpc: connection 4 from uid 1000 gid 1000 pid 77\n"
            "warning dma.alloc from uid 5: Quota exceeded\n");
}

TEST(JournalSinkTest, EventsBelowTheLogLevelAreDropped) {
  CapturedLog log;
  log.SetLevel(spdlog::level::warn);
  RecordingSink recording;
  ScopedSink installed(recording);
  EXPECT_FALSE(Enabled(Level::kInfo));
  EXPECT_TRUE(Enabled(Level::kWarning));
  Emit(Connected());
  Emit(Event{.kind = Kind::kPolicyRefused, .message = "refused"});
  ASSERT_EQ(recording.events().size(), 1u);
  EXPECT_EQ(recording.events()[0].kind, Kind::kPolicyRefused);
}

class JournalStreamTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char path[] = "/tmp/vfiod-journal-stream-XXXXXX";
    fd_ = ::mkstemp(path);
    ASSERT_GE(fd_, 0);
    ::unlink(path);
    struct stat st {};
    ASSERT_EQ(::fstat(fd_, &st), 0);
    dev_ = std::to_string(st.st_dev);
    ino_ = st.st_ino;
  }
  void TearDown() override { ::close(fd_); }

  int fd_ = -1;
  std::string dev_;
  ino_t ino_ = 0;
};

TEST_F(JournalStreamTest, MatchesOnlyTheNamedDeviceAndInode) {
  EXPECT_TRUE(IsJournalStream((dev_ + ":" + std::to_string(ino_)).c_str(), fd_));
  EXPECT_FALSE(IsJournalStream((dev_ + ":" + std::to_string(ino_ + 1)).c_str(), fd_));
  EXPECT_FALSE(IsJournalStream(("1" + dev_ + ":" + std::to_string(ino_)).c_str(), fd_));
}

TEST_F(JournalStreamTest, RefusesAbsentOrMalformedValues) {
  const std::string ino = std::to_string(ino_);
  EXPECT_FALSE(IsJournalStream(nullptr, fd_));
  for (const std::string& bad :
       {std::string(), dev_, ":" + ino, dev_ + ":", dev_ + ":" + ino + "x", dev_ + " :" + ino,
        "-" + dev_ + ":" + ino, dev_ + ":" + ino + ":1"}) {
    EXPECT_FALSE(IsJournalStream(bad.c_str(), fd_)) << "'" << bad << "'";
  }
  EXPECT_FALSE(IsJournalStream((dev_ + ":" + ino).c_str(), -1));  // no such fd
}

}  // namespace
}  // namespace vfiod::journal
