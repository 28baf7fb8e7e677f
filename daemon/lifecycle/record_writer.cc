#include "lifecycle/record_writer.h"

#include <utility>

namespace vfiod::lifecycle {

RecordWriter::RecordWriter(Snapshot snapshot, Store store, OnError on_error,
                           uint64_t first_generation)
    : snapshot_(std::move(snapshot)),
      store_(std::move(store)),
      on_error_(std::move(on_error)),
      generation_(first_generation),
      thread_([this] { Run(); }) {}

RecordWriter::~RecordWriter() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void RecordWriter::Changed() {
  {
    std::lock_guard lock(mu_);
    ++requested_;
  }
  cv_.notify_all();
}

void RecordWriter::Flush() {
  std::unique_lock lock(mu_);
  const uint64_t target = requested_;
  cv_.wait(lock, [&] { return covered_ >= target; });
}

uint64_t RecordWriter::writes() const {
  std::lock_guard lock(mu_);
  return writes_;
}

void RecordWriter::Run() {
  std::unique_lock lock(mu_);
  for (;;) {
    cv_.wait(lock, [&] { return stopping_ || requested_ > covered_; });
    if (requested_ == covered_) {
      return;  // stopping, nothing pending
    }
    const uint64_t taking = requested_;  // the snapshot below sees every change up to here
    lock.unlock();
    StateRecord record = snapshot_();
    record.generation = generation_++;
    auto stored = store_(record);
    if (!stored && on_error_) {
      on_error_(stored.error());
    }
    lock.lock();
    covered_ = taking;
    ++writes_;
    cv_.notify_all();
  }
}

}  // namespace vfiod::lifecycle
