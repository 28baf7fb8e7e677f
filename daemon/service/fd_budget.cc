#include "service/fd_budget.h"

#include <utility>

namespace vfiod::service {

FdBudget::Ticket::Ticket(Ticket&& other) noexcept
    : budget_(std::exchange(other.budget_, nullptr)), fds_(std::exchange(other.fds_, 0)) {}

FdBudget::Ticket& FdBudget::Ticket::operator=(Ticket&& other) noexcept {
  if (this != &other) {
    if (budget_ != nullptr) {
      budget_->Give(fds_);
    }
    budget_ = std::exchange(other.budget_, nullptr);
    fds_ = std::exchange(other.fds_, 0);
  }
  return *this;
}

FdBudget::Ticket::~Ticket() {
  if (budget_ != nullptr) {
    budget_->Give(fds_);
  }
}

void FdBudget::Ticket::Assign(const std::string& name) {
  if (budget_ == nullptr) {
    return;
  }
  FdBudget* budget = std::exchange(budget_, nullptr);
  std::lock_guard lock(budget->mu_);
  budget->by_name_[name] += std::exchange(fds_, 0);  // stays in charged_
}

std::optional<FdBudget::Ticket> FdBudget::Charge(uint64_t fds) {
  if (fds == 0) {
    return Ticket();
  }
  std::lock_guard lock(mu_);
  if (fds > max_ || charged_ > max_ - fds) {
    return std::nullopt;
  }
  charged_ += fds;
  return Ticket(this, fds);
}

void FdBudget::Adopt(const std::string& name, uint64_t fds) {
  if (fds == 0) {
    return;
  }
  std::lock_guard lock(mu_);
  by_name_[name] += fds;
  charged_ += fds;
}

void FdBudget::Release(const std::string& name) {
  std::lock_guard lock(mu_);
  auto it = by_name_.find(name);
  if (it == by_name_.end()) {
    return;
  }
  charged_ -= it->second;
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

uint64_t FdBudget::max() const {
  std::lock_guard lock(mu_);
  return max_;
}

void FdBudget::Give(uint64_t fds) {
  std::lock_guard lock(mu_);
  charged_ -= fds;
}

}  // namespace vfiod::service
