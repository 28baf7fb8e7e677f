#include "service/locked_charges.h"

#include <algorithm>
#include <utility>

namespace vfiod::service {

LockedCharges::Hold::Hold(Hold&& other) noexcept
    : owner_(std::move(other.owner_)), uid_(other.uid_), bytes_(std::exchange(other.bytes_, 0)) {}

LockedCharges::Hold& LockedCharges::Hold::operator=(Hold&& other) noexcept {
  if (this != &other) {
    Release();
    owner_ = std::move(other.owner_);
    uid_ = other.uid_;
    bytes_ = std::exchange(other.bytes_, 0);
  }
  return *this;
}

LockedCharges::Hold::~Hold() { Release(); }

void LockedCharges::Hold::Release() {
  if (owner_) {
    owner_->Release(uid_, bytes_);
    owner_.reset();
    bytes_ = 0;
  }
}

LockedCharges::Hold LockedCharges::Charge(uid_t uid, uint64_t bytes) {
  std::lock_guard lock(mu_);
  if (bytes > 0) {
    by_uid_[uid] += bytes;
    total_ += bytes;
  }
  return Hold(shared_from_this(), uid, bytes);
}

uint64_t LockedCharges::Of(uid_t uid) const {
  std::lock_guard lock(mu_);
  auto it = by_uid_.find(uid);
  return it == by_uid_.end() ? 0 : it->second;
}

uint64_t LockedCharges::Total() const {
  std::lock_guard lock(mu_);
  return total_;
}

std::map<uid_t, uint64_t> LockedCharges::ByUid() const {
  std::lock_guard lock(mu_);
  return by_uid_;
}

void LockedCharges::Release(uid_t uid, uint64_t bytes) {
  if (bytes == 0) {
    return;
  }
  std::lock_guard lock(mu_);
  auto it = by_uid_.find(uid);
  if (it == by_uid_.end()) {
    return;
  }
  const uint64_t given = std::min(it->second, bytes);
  it->second -= given;
  total_ -= std::min(total_, given);
  if (it->second == 0) {
    by_uid_.erase(it);
  }
}

}  // namespace vfiod::service
