// Where one request's time goes, stage by stage: the clock a request carries
// (rpc's ServiceMethods::Invoke makes one per call and hands it down through
// Caller::stages), and the stage names `stats` and the metrics print.
//
// Cost: a steady_clock read at the start and end of each timed stage, no
// lock, no allocation. A StageClock belongs to the one thread running its
// request; it is not shared.
#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace vfiod::service {

/// The stages of a request, in the order a DMA map passes them. Names are
/// stable (StageName): they are `stats`' `stages_us` keys and the `stage`
/// label of vfiod_request_stage_seconds_total.
enum class Stage : uint8_t {
  kParse,        ///< the line's JSON parse and request checks, up to dispatch
  kQueue,        ///< from dispatch to the handler's start (the worker queue)
  kParams,       ///< the handler reading and checking its params (the DMA methods)
  kLookup,       ///< finding the objects: sysfs, policy, container, mapping, quota
  kLockWait,     ///< waiting for the container's mutex
  kPrepare,      ///< the memory's view: BAR mmap, client fd adoption, allocation
  kPlan,         ///< the engine's checks, placement, IOVA and chunk plan
  kIoctl,        ///< MAP_DMA / UNMAP_DMA (an unmap: with the release of the view)
  kBookkeeping,  ///< the service's tables, counters and journal after the kernel work
  kRecord,       ///< the fd store and the state records (the durable part)
  kResult,       ///< the handler building its result (the DMA methods)
  kOther,        ///< the rest of the handler: session, method policy, the service's glue
  kReply,        ///< the reply built and serialised (its sendmsg is not counted)
};
inline constexpr std::size_t kStageCount = static_cast<std::size_t>(Stage::kReply) + 1;

/// The handler's own stages (what `total_us` counts): kParams to kOther.
[[nodiscard]] constexpr bool InHandler(Stage s) {
  return s >= Stage::kParams && s <= Stage::kOther;
}

/// The stable name of `s` ("parse", "queue", "params", "lookup", "lock_wait",
/// "prepare", "plan", "ioctl", "bookkeeping", "record", "result", "other",
/// "reply").
[[nodiscard]] std::string_view StageName(Stage s);

/// Nanoseconds per stage of one request (or totals of many).
using StageTimes = std::array<uint64_t, kStageCount>;

/// The stage times of one request. Stages are timed where the code passes
/// them (StageScope), not by elapsed time between marks, so untimed code
/// falls to kOther (Close).
class StageClock {
 public:
  using Clock = std::chrono::steady_clock;

  /// Adds `d` to stage `s` (a negative duration adds nothing).
  void Add(Stage s, Clock::duration d) {
    if (d.count() > 0) {
      times_[static_cast<std::size_t>(s)] +=
          static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(d).count());
    }
  }
  /// Ends the handler, which ran `handler` in all: kOther gets what no
  /// in-handler stage accounted for, so the in-handler stages add up to it.
  void Close(Clock::duration handler);
  [[nodiscard]] const StageTimes& times() const { return times_; }

 private:
  StageTimes times_{};
};

/// Times its own scope into `stage` of `clock` (nothing when `clock` is
/// null). Scopes must not nest: a nested one would be counted twice.
class StageScope {
 public:
  StageScope(StageClock* clock, Stage stage)
      : clock_(clock), stage_(stage), start_(clock ? StageClock::Clock::now() : Start{}) {}
  StageScope(const StageScope&) = delete;
  StageScope& operator=(const StageScope&) = delete;
  ~StageScope() { End(); }
  /// Ends the scope early (idempotent).
  void End() {
    if (clock_ != nullptr) {
      clock_->Add(stage_, StageClock::Clock::now() - start_);
      clock_ = nullptr;
    }
  }

 private:
  using Start = StageClock::Clock::time_point;
  StageClock* clock_;
  Stage stage_;
  Start start_;
};

}  // namespace vfiod::service
