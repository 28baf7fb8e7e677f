// The JSON-RPC 2.0 server: accepts unix-socket connections and serves a
// MethodRegistry on them. Knows nothing of VFIO.
//
// Threads: the caller runs the io_context (one or more threads); each
// connection's state lives on its own strand, the server's connection table on
// server_strand_. Handlers marked blocking run on workers_, never on an io
// thread, queued per user (the peer's uid) and taken in turns, with at most
// ServerConfig::blocking_per_user of one user's calls running at once (see
// FairQueue); the worker that ran a blocking single request also writes its
// reply (see Connection), so such a call costs the io thread no second
// wake-up. Close hooks run on closers_, threads of their own: a session's
// clean-up never waits in the queue behind client calls, and one user's slow
// clean-up (or clean-ups) holds one closer at most.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "proto/result.h"
#include "proto/unique_fd.h"
#include "rpc/admission.h"
#include "rpc/connection.h"
#include "rpc/fair_executor.h"
#include "rpc/method_registry.h"
#include "rpc/server_config.h"

namespace vfiod::rpc {

/// Runs on a closer thread (not a worker) after a connection closed and all
/// its calls finished: the place to free what the connection's client held.
using CloseHook = std::function<void(ConnectionId id, const PeerCredentials& peer)>;

class Server {
 public:
  /// `registry` must be complete and must outlive the server.
  Server(asio::io_context& io, const MethodRegistry& registry, ServerConfig config = {});
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;
  Server(Server&&) = delete;
  Server& operator=(Server&&) = delete;
  /// Joins the worker pool. Call Stop() and stop/join the io_context threads
  /// first: pending io handlers refer to the server.
  ~Server();

  /// Creates the listening socket at `path` (see ListenUnix for the errnos;
  /// EBUSY if the server has one already); Stop() removes the file again.
  [[nodiscard]] Result<void> Listen(const std::string& path, mode_t mode,
                                    std::optional<gid_t> group = std::nullopt);
  /// Serves an inherited listening socket (socket activation); see
  /// AdoptListeningSocket for the errnos; EBUSY if the server has one already.
  [[nodiscard]] Result<void> Adopt(UniqueFd listening_fd);

  /// Adds a hook run for every closed connection. Only before Start().
  void AddCloseHook(CloseHook hook);

  /// Starts accepting. Listen() or Adopt() must have succeeded.
  void Start();
  /// Stops accepting and closes every connection; thread-safe, idempotent.
  void Stop();

  /// One line per open connection (Connection::Describe), read on their
  /// strands; waits at most `timeout` for the io thread. For reports of a hang.
  [[nodiscard]] std::vector<std::string> DescribeConnections(std::chrono::milliseconds timeout);

  /// Open connections (for tests and status).
  [[nodiscard]] std::size_t connection_count() const { return connection_count_.load(); }

 private:
  Result<void> AssignListener(UniqueFd fd);
  void WaitAccept();
  void AcceptPending();
  void Serve(UniqueFd fd);
  void OnClosed(const std::shared_ptr<ConnectionInfo>& info);

  asio::io_context& io_;
  const MethodRegistry& registry_;
  ServerConfig config_;
  std::vector<CloseHook> close_hooks_;  // fixed once Start() ran
  // Both are joined by the destructor (workers first: a call may still be
  // running when the last close is reported) before the io objects below go.
  FairExecutor workers_;
  FairExecutor closers_;
  asio::strand<asio::io_context::executor_type> server_strand_;
  // Owned by server_strand_: the listening socket, the retry timer after
  // EMFILE, the connection table, its accounting and the id counter.
  asio::posix::stream_descriptor listener_;
  asio::steady_timer accept_retry_;
  std::map<ConnectionId, std::shared_ptr<Connection>> connections_;
  Admission admission_;  // who holds how many of connections_
  ConnectionId next_id_ = 0;
  std::string unlink_path_;  // set by Listen(), removed by Stop()
  bool stopped_ = false;
  std::atomic<std::size_t> connection_count_{0};
};

}  // namespace vfiod::rpc
