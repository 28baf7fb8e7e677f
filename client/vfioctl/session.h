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
  std::string owner;                    ///< --owner: whose names to use ("": the caller's)
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

  /// A container named by id ("3") or by name ("demo"). A name is one of the
  /// caller's own names, or of the user --owner names: container.attach
  /// resolves it in that owner's names only (and checks that the caller may
  /// use it), so another user's container is never used unless asked for.
  /// When it belongs to someone else, a note on stderr says whose it is.
  [[nodiscard]] std::expected<uint64_t, Failure> ResolveContainer(const std::string& ref);

  /// A mapping named by id or by the name it was given: one of the caller's
  /// own mappings (or --owner's), searched in dma.list.
  [[nodiscard]] std::expected<uint64_t, Failure> ResolveMapping(const std::string& ref);

  /// The uid whose names are used: --owner's (a uid or a user name), else the
  /// caller's. kUsage failure for an unknown user name.
  [[nodiscard]] std::expected<uid_t, Failure> NameOwner() const;

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
