// A stand-in for systemd's side of the fd store, for tests and for the VM
// (where no systemd runs): it binds a unix datagram socket for NOTIFY_SOCKET,
// receives notifications with their SCM_RIGHTS fds, keeps the fd store by name
// (FDSTORE=1 adds, FDSTOREREMOVE=1 drops every fd of a name, the same file
// stored twice is kept once), and starts a child with the stored fds as
// 3, 4, ... and LISTEN_FDS / LISTEN_FDNAMES / LISTEN_PID set for it.
#pragma once

#include <sys/types.h>

#include <map>
#include <string>
#include <vector>

#include "proto/result.h"
#include "proto/unique_fd.h"

namespace vfiod::testing {

class FdStoreSupervisor {
 public:
  /// One fd in the store.
  struct Entry {
    std::string name;
    UniqueFd fd;
    dev_t dev = 0;
    ino_t ino = 0;
  };
  /// What Spawn does to the child's environment beyond the store's fds.
  struct SpawnOptions {
    /// Extra or replaced variables; "LISTEN_PID" = "$PID" becomes the child's pid.
    std::map<std::string, std::string> env;
    /// Variables removed from the child's environment.
    std::vector<std::string> unset;
    bool pass_store = true;  ///< false: no fds, no LISTEN_* from the store
  };

  /// Binds the socket at a fresh path under `dir` (or an abstract name when
  /// `abstract`). Errors: socket/bind's.
  static Result<FdStoreSupervisor> Create(const std::string& dir, bool abstract = false);

  /// The value for NOTIFY_SOCKET ("/path" or "@name").
  [[nodiscard]] const std::string& notify_socket() const { return address_; }

  /// Receives every notification waiting now, after waiting up to
  /// `timeout_ms` for the first one. Returns how many arrived.
  Result<int> Pump(int timeout_ms);

  /// Puts `fd` into the store under `name` (as a socket unit's socket is).
  void Add(const std::string& name, UniqueFd fd);

  /// Every notification text received, in order.
  [[nodiscard]] const std::vector<std::string>& messages() const { return messages_; }
  /// The store, in the order fds were added.
  [[nodiscard]] const std::vector<Entry>& store() const { return store_; }
  /// The stored entries named `name`.
  [[nodiscard]] std::vector<const Entry*> Named(const std::string& name) const;

  /// fork + exec `argv` with NOTIFY_SOCKET set and, unless told otherwise,
  /// the store's fds at 3, 4, ... and LISTEN_FDS, LISTEN_FDNAMES, LISTEN_PID
  /// (the child's own pid, set after fork); every other fd past stderr is
  /// closed in the child, as systemd does. The child's stdout and stderr go to
  /// `stdout_fd` when valid. Returns the child's pid.
  Result<pid_t> Spawn(const std::vector<std::string>& argv, const SpawnOptions& options,
                      int stdout_fd = -1);

 private:
  FdStoreSupervisor() = default;
  void Apply(const std::string& text, std::vector<UniqueFd> fds);

  std::string address_;
  std::string path_;  // unlinked on destruction (empty: abstract)
  UniqueFd sock_;
  std::vector<std::string> messages_;
  std::vector<Entry> store_;

 public:
  FdStoreSupervisor(FdStoreSupervisor&&) = default;
  FdStoreSupervisor& operator=(FdStoreSupervisor&&) = default;
  ~FdStoreSupervisor();
};

/// Runs `argv` under `supervisor`, waits for it, returns its stdout and exit
/// status (as from waitpid). Pumps the notify socket while it runs.
struct ChildRun {
  std::string output;
  int status = 0;
};
Result<ChildRun> RunChild(FdStoreSupervisor& supervisor, const std::vector<std::string>& argv,
                          const FdStoreSupervisor::SpawnOptions& options);

}  // namespace vfiod::testing
