#include "journal/user_budget.h"

#include <algorithm>
#include <string>

#include "journal/sink.h"

namespace vfiod::journal {

void UserBudget::Configure(uint32_t per_second, uint32_t burst) {
  std::lock_guard lock(mu_);
  per_second_ = per_second;
  burst_ = std::max<uint32_t>(burst, 1);
  users_.clear();
}

uint32_t UserBudget::per_second() const {
  std::lock_guard lock(mu_);
  return per_second_;
}

UserBudget::Verdict UserBudget::Admit(uid_t uid, Clock::time_point now) {
  std::lock_guard lock(mu_);
  if (per_second_ == 0 || uid == 0) {
    return {};
  }
  auto [it, fresh] = users_.try_emplace(uid);
  Bucket& b = it->second;
  if (fresh) {
    b.tokens = burst_;
    b.filled = now;
  } else if (now > b.filled) {
    const double seconds = std::chrono::duration<double>(now - b.filled).count();
    b.tokens = std::min<double>(burst_, b.tokens + seconds * per_second_);
    b.filled = now;
  }
  if (b.tokens < 1) {
    ++b.suppressed;
    return {.log = false};
  }
  b.tokens -= 1;
  return {.log = true, .suppressed = std::exchange(b.suppressed, 0)};
}

std::vector<std::pair<uid_t, uint64_t>> UserBudget::TakeSuppressed() {
  std::lock_guard lock(mu_);
  std::vector<std::pair<uid_t, uint64_t>> out;
  for (auto& [uid, bucket] : users_) {
    if (bucket.suppressed != 0) {
      out.emplace_back(uid, std::exchange(bucket.suppressed, 0));
    }
  }
  return out;
}

UserBudget& ProcessUserBudget() {
  static UserBudget budget;  // lives as long as the process
  return budget;
}

namespace {

void EmitSuppressed(uid_t uid, uint64_t count) {
  const uint32_t rate = ProcessUserBudget().per_second();
  Emit({.kind = Kind::kEventsSuppressed,
        .message = "uid " + std::to_string(uid) + ": " + std::to_string(count) +
                   " log lines not written (over " + std::to_string(rate) +
                   " a second: logging.user_lines_per_second)",
        .uid = uid});
}

}  // namespace

bool MayLogFor(uid_t uid, Level level) { return MayLogFor(uid, level, UserBudget::Clock::now()); }

bool MayLogFor(uid_t uid, Level level, UserBudget::Clock::time_point now) {
  if (!Enabled(level)) {
    return false;
  }
  const UserBudget::Verdict verdict = ProcessUserBudget().Admit(uid, now);
  if (verdict.log && verdict.suppressed != 0) {
    EmitSuppressed(uid, verdict.suppressed);
  }
  return verdict.log;
}

void ReportSuppressed() {
  for (const auto& [uid, count] : ProcessUserBudget().TakeSuppressed()) {
    EmitSuppressed(uid, count);
  }
}

}  // namespace vfiod::journal
