#include "service/stages.h"

namespace vfiod::service {

std::string_view StageName(Stage s) {
  switch (s) {
    case Stage::kParse:
      return "parse";
    case Stage::kQueue:
      return "queue";
    case Stage::kParams:
      return "params";
    case Stage::kLookup:
      return "lookup";
    case Stage::kLockWait:
      return "lock_wait";
    case Stage::kPrepare:
      return "prepare";
    case Stage::kPlan:
      return "plan";
    case Stage::kIoctl:
      return "ioctl";
    case Stage::kBookkeeping:
      return "bookkeeping";
    case Stage::kRecord:
      return "record";
    case Stage::kResult:
      return "result";
    case Stage::kOther:
      return "other";
    case Stage::kReply:
      break;
  }
  return "reply";
}

void StageClock::Close(Clock::duration handler) {
  const auto total =
      static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(handler).count());
  uint64_t accounted = 0;
  for (std::size_t i = 0; i < kStageCount; ++i) {
    if (InHandler(static_cast<Stage>(i))) {
      accounted += times_[i];
    }
  }
  times_[static_cast<std::size_t>(Stage::kOther)] += total > accounted ? total - accounted : 0;
}

}  // namespace vfiod::service
