// Where key events (journal/event.h) go. Under journald (stderr is the
// stream systemd connected to the journal) each event is one structured
// entry sent with sd_journal_sendv; otherwise it is the plain log line vfiod
// has always written, through spdlog. The choice is made once, at start-up
// (main.cc), before any thread exists.
#pragma once

#include <spdlog/common.h>
#include <sys/uio.h>

#include <atomic>
#include <cstdint>

#include "journal/event.h"

namespace vfiod::journal {

/// A destination for events. Write may be called from any thread at once.
class Sink {
 public:
  Sink() = default;
  virtual ~Sink() = default;
  Sink(const Sink&) = delete;
  Sink& operator=(const Sink&) = delete;
  Sink(Sink&&) = delete;
  Sink& operator=(Sink&&) = delete;
  /// Records `event`; never fails (a sink that cannot write says so itself).
  virtual void Write(const Event& event) = 0;
};

/// The plain line: `event.message` through spdlog's default logger at the
/// event's level, exactly as a spdlog call would write it.
class TextSink final : public Sink {
 public:
  void Write(const Event& event) override;
};

/// One journal entry per event (JournalFields), sent through `send`:
/// sd_journal_sendv unless a test passes its own. If sending fails, the line
/// goes to stderr instead, so the event is not lost, and failures() counts it.
class JournalSink final : public Sink {
 public:
  /// Same contract as sd_journal_sendv: 0 on success, a negative errno else.
  using SendFn = int (*)(const struct iovec* iov, int n);

  JournalSink();
  explicit JournalSink(SendFn send) : send_(send) {}
  void Write(const Event& event) override;
  [[nodiscard]] uint64_t failures() const { return failures_.load(std::memory_order_relaxed); }

 private:
  SendFn send_;
  std::atomic<uint64_t> failures_{0};
};

/// Makes `sink` receive every event from now on; nullptr restores the
/// TextSink. Not owned: it must outlive every Emit that can reach it.
void SetSink(Sink* sink);

/// Whether an event at `level` would be logged (spdlog's default logger's
/// level decides), so a caller can skip building one.
[[nodiscard]] bool Enabled(Level level);

/// spdlog's level for `level`.
[[nodiscard]] spdlog::level::level_enum SpdlogLevel(Level level);

/// Gives `event` to the current sink if its level is enabled and, for an
/// event a client caused (CausedByClient, with its uid), if that user's log
/// budget has room (user_budget.h: MayLogFor). kDaemonStopped first reports
/// every user's lines cut and not yet reported.
void Emit(const Event& event);

/// Whether `fd` is the stream systemd connected to the journal:
/// `journal_stream` is the JOURNAL_STREAM variable ("<device>:<inode>", both
/// decimal) and names fd's device and inode. False when it is null,
/// malformed, or names another file (stderr was redirected).
[[nodiscard]] bool IsJournalStream(const char* journal_stream, int fd);

}  // namespace vfiod::journal
