#include "journal/sink.h"

#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <systemd/sd-journal.h>

#include <charconv>
#include <cstdio>
#include <cstring>
#include <string_view>
#include <vector>

#include "journal/user_budget.h"

namespace vfiod::journal {

spdlog::level::level_enum SpdlogLevel(Level level) {
  switch (level) {
    case Level::kCritical:
      return spdlog::level::critical;
    case Level::kError:
      return spdlog::level::err;
    case Level::kWarning:
      return spdlog::level::warn;
    case Level::kInfo:
      return spdlog::level::info;
    case Level::kDebug:
      return spdlog::level::debug;
  }
  return spdlog::level::info;
}

namespace {

TextSink g_text_sink;
std::atomic<Sink*> g_sink{&g_text_sink};

/// Parses all of `text` as a decimal number.
bool ParseNumber(std::string_view text, uint64_t* out) {
  if (text.empty()) {
    return false;
  }
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), *out);
  return ec == std::errc() && end == text.data() + text.size();
}

}  // namespace

void TextSink::Write(const Event& event) {
  spdlog::default_logger_raw()->log(SpdlogLevel(LevelOf(event)), "{}", event.message);
}

JournalSink::JournalSink() : send_(&sd_journal_sendv) {}

void JournalSink::Write(const Event& event) {
  const std::vector<std::string> fields = JournalFields(event);
  std::vector<iovec> iov(fields.size());
  for (std::size_t i = 0; i < fields.size(); ++i) {
    iov[i].iov_base = const_cast<char*>(fields[i].data());  // NOLINT: read only
    iov[i].iov_len = fields[i].size();
  }
  if (send_(iov.data(), static_cast<int>(iov.size())) < 0) {
    failures_.fetch_add(1, std::memory_order_relaxed);
    (void)std::fprintf(stderr, "%s\n", event.message.c_str());
  }
}

void SetSink(Sink* sink) {
  g_sink.store(sink != nullptr ? sink : &g_text_sink, std::memory_order_release);
}

bool Enabled(Level level) { return spdlog::default_logger_raw()->should_log(SpdlogLevel(level)); }

void Emit(const Event& event) {
  if (!Enabled(LevelOf(event))) {
    return;
  }
  if (event.uid && CausedByClient(event.kind) && !MayLogFor(*event.uid, LevelOf(event))) {
    return;  // over its user's budget: counted, reported with a later line
  }
  if (event.kind == Kind::kDaemonStopped) {
    ReportSuppressed();  // the last chance to say what was cut
  }
  g_sink.load(std::memory_order_acquire)->Write(event);
}

bool IsJournalStream(const char* journal_stream, int fd) {
  if (journal_stream == nullptr) {
    return false;
  }
  const std::string_view text(journal_stream);
  const std::size_t colon = text.find(':');
  uint64_t device = 0;
  uint64_t inode = 0;
  if (colon == std::string_view::npos || !ParseNumber(text.substr(0, colon), &device) ||
      !ParseNumber(text.substr(colon + 1), &inode)) {
    return false;
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    return false;
  }
  return st.st_dev == device && st.st_ino == inode;
}

}  // namespace vfiod::journal
