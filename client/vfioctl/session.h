// What every vfioctl command shares: the global options, one connection to
// vfiod (opened on the first call), name resolution for containers and
// mappings, and the choice between --json and human output.
#pragma once

#include <cstdint>
#include <expected>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <ostream>
#include <span>
#include <string>

#include "client/vfiod_client.h"
#include "vfioctl/exit_codes.h"

namespace vfiod::vfioctl {

inline constexpr const char* kDefaultSocket = "/run/vfiod/vfiod.sock";

struct GlobalOptions {
  std::string socket = kDefaultSocket;  ///< --socket, else $VFIOD_SOCKET
  double timeout_s = 60;                ///< --timeout; 0 waits forever
  bool timeout_given = false;           ///< --timeout was on the command line
  bool json = false;                    ///< --json: print the RPC result verbatim
  bool no_progress = false;             ///< --no-progress
};

using CallOutcome = std::expected<client::Response, Failure>;

class Session {
 public:
  explicit Session(const GlobalOptions& options) : options_(options) {}

  /// Calls `method` (connecting first if needed). The failure carries the exit
  /// status for the error (see ExitFor) and a one-line message naming `method`.
  [[nodiscard]] CallOutcome Call(const std::string& method, const nlohmann::json& params = nullptr,
                                 std::span<const int> fds = {});

  /// Call for a map that may take long: draws a progress bar from the daemon's
  /// dma.progress notifications when stderr is a terminal (then "progress":
  /// true is added to `params`), and waits as long as the map takes unless
  /// --timeout was given.
  [[nodiscard]] CallOutcome CallWithProgress(const std::string& method, nlohmann::json params,
                                             std::span<const int> fds = {});

  /// A container named by id ("3") or by name ("demo"). A name is looked up
  /// among the containers this client may see (container.list: the caller's
  /// own, named ones included); failing that, it is attached (container.attach,
  /// which the policy checks), which also makes it usable on this connection.
  [[nodiscard]] std::expected<uint64_t, Failure> ResolveContainer(const std::string& ref);

  /// A mapping named by id or by the name it was given (searched in dma.list).
  [[nodiscard]] std::expected<uint64_t, Failure> ResolveMapping(const std::string& ref);

  [[nodiscard]] const GlobalOptions& options() const { return options_; }
  [[nodiscard]] bool json_output() const { return options_.json; }

  /// Prints `result`: with --json, verbatim on one line; else through `human`.
  void Emit(const nlohmann::json& result, const std::function<void(std::ostream&)>& human) const;

 private:
  /// The connected client, connecting on first use. kUnreachable failures.
  [[nodiscard]] std::expected<client::Client*, Failure> Connect();
  [[nodiscard]] CallOutcome CallWithin(const std::string& method, const nlohmann::json& params,
                                       std::span<const int> fds, std::chrono::milliseconds timeout);
  [[nodiscard]] std::chrono::milliseconds Timeout() const;

  const GlobalOptions& options_;
  std::optional<client::Client> client_;
};

/// True when `text` is a non-empty run of decimal digits (an id, not a name).
[[nodiscard]] bool IsId(const std::string& text);

}  // namespace vfiod::vfioctl
