#include "rpc/fair_queue.h"

#include <utility>

namespace vfiod::rpc {

void FairQueue::Push(Tenant tenant, Task task) {
  Lane& lane = lanes_[tenant];
  if (lane.waiting.empty()) {
    rotation_.push_back(tenant);  // a tenant is in the rotation while it has work queued
  }
  lane.waiting.push_back(std::move(task));
  ++queued_;
}

std::optional<FairQueue::Picked> FairQueue::Pop() {
  for (auto turn = rotation_.begin(); turn != rotation_.end(); ++turn) {
    Lane& lane = lanes_.at(*turn);
    if (lane.running >= cap_) {
      continue;  // keeps its place: first in line once a task of it ends
    }
    Picked picked{*turn, std::move(lane.waiting.front())};
    lane.waiting.pop_front();
    ++lane.running;
    --queued_;
    if (lane.waiting.empty()) {
      rotation_.erase(turn);
    } else {
      rotation_.splice(rotation_.end(), rotation_, turn);
    }
    return picked;
  }
  return std::nullopt;
}

void FairQueue::Done(Tenant tenant) {
  auto lane = lanes_.find(tenant);
  if (lane == lanes_.end() || lane->second.running == 0) {
    return;  // not running: a caller's bug, and nothing to give back
  }
  --lane->second.running;
  DropIfIdle(lane);
}

std::size_t FairQueue::running(Tenant tenant) const {
  auto lane = lanes_.find(tenant);
  return lane == lanes_.end() ? 0 : lane->second.running;
}

void FairQueue::DropIfIdle(std::unordered_map<Tenant, Lane>::iterator lane) {
  if (lane->second.running == 0 && lane->second.waiting.empty()) {
    lanes_.erase(lane);
  }
}

}  // namespace vfiod::rpc
