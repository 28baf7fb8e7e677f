#include "service/fd_budget.h"

#include <utility>

namespace vfiod::service {

FdBudget::Ticket::Ticket(Ticket&& other) noexcept
    : budget_(std::exchange(other.budget_, nullptr)),
      uid_(other.uid_),
      fds_(std::exchange(other.fds_, 0)) {}

FdBudget::Ticket& FdBudget::Ticket::operator=(Ticket&& other) noexcept {
  if (this != &other) {
    if (budget_ != nullptr) {
      budget_->Give(uid_, fds_);
    }
    budget_ = std::exchange(other.budget_, nullptr);
    uid_ = other.uid_;
    fds_ = std::exchange(other.fds_, 0);
  }
  return *this;
}

FdBudget::Ticket::~Ticket() {
  if (budget_ != nullptr) {
    budget_->Give(uid_, fds_);
  }
}

void FdBudget::Ticket::Assign(const std::string& name) {
  if (budget_ == nullptr) {
    return;
  }
  FdBudget* budget = std::exchange(budget_, nullptr);
  std::lock_guard lock(budget->mu_);
  Named& named = budget->by_name_.try_emplace(name, Named{uid_, 0}).first->second;
  named.fds += std::exchange(fds_, 0);  // stays in the uid's charge
}

std::expected<FdBudget::Ticket, FdBudget::Refusal> FdBudget::Charge(uid_t uid, uint64_t fds) {
  if (fds == 0) {
    return Ticket();
  }
  std::lock_guard lock(mu_);
  // Each test keeps its sum below a bound, so nothing overflows.
  auto fits = [fds](uint64_t used, uint64_t cap) { return fds <= cap && used <= cap - fds; };
  if (uid != 0) {  // the user's own limit first: the one it can do something about
    if (!fits(ChargedLocked(uid), max_per_user_)) {
      return std::unexpected(Refusal::kUser);
    }
    if (!fits(charged_ - ChargedLocked(0), max_ - max_ / kRootReserveDivisor)) {
      return std::unexpected(Refusal::kAll);
    }
  }
  if (!fits(charged_, max_)) {
    return std::unexpected(Refusal::kAll);
  }
  AddLocked(uid, fds);
  return Ticket(this, uid, fds);
}

void FdBudget::Adopt(const std::string& name, uid_t uid, uint64_t fds) {
  if (fds == 0) {
    return;
  }
  std::lock_guard lock(mu_);
  by_name_.try_emplace(name, Named{uid, 0}).first->second.fds += fds;
  AddLocked(uid, fds);
}

void FdBudget::Release(const std::string& name) {
  std::lock_guard lock(mu_);
  auto it = by_name_.find(name);
  if (it == by_name_.end()) {
    return;
  }
  SubtractLocked(it->second.uid, it->second.fds);
  by_name_.erase(it);
}

void FdBudget::SetMax(uint64_t max) {
  std::lock_guard lock(mu_);
  max_ = max;
}

uint64_t FdBudget::charged() const {
  std::lock_guard lock(mu_);
  return charged_;
}

uint64_t FdBudget::charged(uid_t uid) const {
  std::lock_guard lock(mu_);
  return ChargedLocked(uid);
}

uint64_t FdBudget::ChargedLocked(uid_t uid) const {
  auto it = by_uid_.find(uid);
  return it == by_uid_.end() ? 0 : it->second;
}

uint64_t FdBudget::max() const {
  std::lock_guard lock(mu_);
  return max_;
}

uint64_t FdBudget::root_reserve() const {
  std::lock_guard lock(mu_);
  return max_ / kRootReserveDivisor;
}

void FdBudget::Give(uid_t uid, uint64_t fds) {
  std::lock_guard lock(mu_);
  SubtractLocked(uid, fds);
}

void FdBudget::AddLocked(uid_t uid, uint64_t fds) {
  by_uid_[uid] += fds;
  charged_ += fds;
}

void FdBudget::SubtractLocked(uid_t uid, uint64_t fds) {
  auto it = by_uid_.find(uid);
  if (it == by_uid_.end()) {
    return;  // never: every charge was added first
  }
  it->second -= fds;
  if (it->second == 0) {
    by_uid_.erase(it);
  }
  charged_ -= fds;
}

}  // namespace vfiod::service
