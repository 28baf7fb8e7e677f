// Keeping the fd store's state record current without making the service
// wait for it: a change only marks the record stale; one writer thread takes
// a snapshot and stores it (record_store.h). Changes made while a record is
// being written coalesce into one more record, so the record is at most one
// write behind. The objects created in that window come back from their own
// records (object_record.h); what neither describes is dropped from the
// store on start. Callers that need their change recorded before they go on
// call Flush().
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>

#include "lifecycle/state_record.h"
#include "proto/result.h"

namespace vfiod::lifecycle {

class RecordWriter {
 public:
  /// The current state (called on the writer thread, never under its lock).
  using Snapshot = std::function<StateRecord()>;
  /// Stores a stamped record (StoreStateRecord in the daemon).
  using Store = std::function<Result<bool>(const StateRecord&)>;
  /// Told of each failed store; the next change tries again.
  using OnError = std::function<void(const Error&)>;

  /// Starts the writer thread. The first record stored gets
  /// `first_generation` (past the newest record found on start), each next
  /// one the generation after. Nothing is written until Changed().
  RecordWriter(Snapshot snapshot, Store store, OnError on_error, uint64_t first_generation);
  /// Writes what is still pending, then joins the thread.
  ~RecordWriter();
  RecordWriter(const RecordWriter&) = delete;
  RecordWriter& operator=(const RecordWriter&) = delete;
  RecordWriter(RecordWriter&&) = delete;  // its thread holds `this`
  RecordWriter& operator=(RecordWriter&&) = delete;

  /// The state changed: a record taken after this call will be stored.
  /// Never blocks on a write (takes a leaf lock only).
  void Changed();
  /// Waits until a record taken after every earlier Changed() is stored (or
  /// its store failed).
  void Flush();
  /// Records stored (or failed) so far.
  [[nodiscard]] uint64_t writes() const;

 private:
  void Run();

  Snapshot snapshot_;
  Store store_;
  OnError on_error_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  uint64_t requested_ = 0;  // Changed() calls; guarded by mu_
  uint64_t covered_ = 0;    // requests a finished write took into account; mu_
  uint64_t writes_ = 0;     // guarded by mu_
  uint64_t generation_;     // the next record's; writer thread only
  bool stopping_ = false;   // guarded by mu_
  std::thread thread_;      // last: started once everything above is set
};

}  // namespace vfiod::lifecycle
