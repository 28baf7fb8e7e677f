// How many log lines a user's requests may cause: a token bucket per uid.
//
// Why: journald drops every line of a unit past the unit's own rate limit
// (by default 10,000 in 30 s). Without a budget of its own, one member of
// vfio-users sending refused requests in a loop would make vfiod log a
// warning per request, and so silence vfiod's journal for everyone: other
// users' events, the admin's audit trail, the daemon's own errors. With it,
// each user's lines are cut at the budget, the cut is counted, and the count
// is logged (one events_suppressed line) with that user's next line that
// passes, or when vfiod stops.
//
// Root (uid 0) is never limited. Thread-safe: one mutex, held for a map
// lookup and some arithmetic.
#pragma once

#include <spdlog/spdlog.h>
#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <utility>
#include <vector>

#include "journal/event.h"
#include "journal/sink.h"

namespace vfiod::journal {

class UserBudget {
 public:
  using Clock = std::chrono::steady_clock;

  /// `per_second` lines a second per user, at most `burst` at once (a user
  /// starts with a full bucket). per_second 0: no limit (the default).
  void Configure(uint32_t per_second, uint32_t burst);

  /// What Admit decided for one line.
  struct Verdict {
    bool log = true;          ///< log the line
    uint64_t suppressed = 0;  ///< when logged: lines of this user cut before it
  };
  /// Takes a token of `uid`'s bucket at `now` if there is one.
  [[nodiscard]] Verdict Admit(uid_t uid, Clock::time_point now);

  /// Every user with lines cut and not yet reported, with their counts; the
  /// counts start again at 0.
  [[nodiscard]] std::vector<std::pair<uid_t, uint64_t>> TakeSuppressed();

  [[nodiscard]] uint32_t per_second() const;

 private:
  struct Bucket {
    double tokens = 0;
    Clock::time_point filled{};
    uint64_t suppressed = 0;
  };
  mutable std::mutex mu_;
  uint32_t per_second_ = 0;        // guarded by mu_
  uint32_t burst_ = 0;             // guarded by mu_
  std::map<uid_t, Bucket> users_;  // guarded by mu_; one per user who logged
};

/// The process's budget: main configures it from logging.user_lines_per_second
/// and logging.user_burst; journal::Emit and MayLogFor consult it.
[[nodiscard]] UserBudget& ProcessUserBudget();

/// Whether a line at `level` that `uid`'s request caused is logged now:
/// false, taking nothing from the budget, when the level is not logged at
/// all; else Admit on the process's budget. When lines of `uid` were cut
/// before this one, logs an events_suppressed event saying how many, first.
[[nodiscard]] bool MayLogFor(uid_t uid, Level level);
/// MayLogFor at `now` (a test's clock).
[[nodiscard]] bool MayLogFor(uid_t uid, Level level, UserBudget::Clock::time_point now);

/// Logs `format` with `args` at `level` through spdlog's default logger when
/// MayLogFor(uid, level): a line that `uid`'s request caused.
template <typename... Args>
void LogFor(uid_t uid, Level level, spdlog::format_string_t<Args...> format, Args&&... args) {
  if (MayLogFor(uid, level)) {
    spdlog::default_logger_raw()->log(SpdlogLevel(level), format, std::forward<Args>(args)...);
  }
}

/// Logs an events_suppressed event for every user with cut lines not yet
/// reported (at shutdown, so no count is lost).
void ReportSuppressed();

}  // namespace vfiod::journal
