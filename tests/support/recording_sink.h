// A journal::Sink that keeps every event (tests check what a key event
// carries), and the RAII that installs a sink for one test.
#pragma once

#include <algorithm>
#include <mutex>
#include <optional>
#include <vector>

#include "journal/sink.h"

namespace vfiod::journal {

class RecordingSink final : public Sink {
 public:
  void Write(const Event& event) override {
    std::lock_guard lock(mu_);
    events_.push_back(event);
  }
  [[nodiscard]] std::vector<Event> events() const {
    std::lock_guard lock(mu_);
    return events_;
  }
  /// The events of `kind`, in the order they were written.
  [[nodiscard]] std::vector<Event> Of(Kind kind) const {
    std::vector<Event> out;
    for (const Event& e : events()) {
      if (e.kind == kind) {
        out.push_back(e);
      }
    }
    return out;
  }
  void Clear() {
    std::lock_guard lock(mu_);
    events_.clear();
  }

 private:
  mutable std::mutex mu_;
  std::vector<Event> events_;
};

/// Installs `sink` for its lifetime, then restores the text sink.
class ScopedSink {
 public:
  explicit ScopedSink(Sink& sink) { SetSink(&sink); }
  ~ScopedSink() { SetSink(nullptr); }
  ScopedSink(const ScopedSink&) = delete;
  ScopedSink& operator=(const ScopedSink&) = delete;
  ScopedSink(ScopedSink&&) = delete;
  ScopedSink& operator=(ScopedSink&&) = delete;
};

/// Whether `fields` (JournalFields output) holds exactly "name=value".
[[nodiscard]] inline bool HasField(const std::vector<std::string>& fields,
                                   const std::string& name_value) {
  return std::find(fields.begin(), fields.end(), name_value) != fields.end();
}

}  // namespace vfiod::journal
