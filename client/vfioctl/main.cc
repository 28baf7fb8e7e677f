// vfioctl: the command-line client of vfiod. Noun-verb subcommands over every
// API method; human tables by default, --json prints the RPC result verbatim.
// Exit codes: see exit_codes.h (and README.md, "Using vfioctl").
#include <CLI/CLI.hpp>
#include <cstdio>
#include <exception>
#include <iostream>
#include <nlohmann/json.hpp>

#include "vfioctl/bench.h"
#include "vfioctl/commands.h"
#include "vfioctl/exit_codes.h"
#include "vfioctl/session.h"

namespace vfiod::vfioctl {
namespace {

void AddGlobalOptions(CLI::App& app, GlobalOptions& options) {
  app.add_option("--socket,-s", options.socket, "vfiod's socket")
      ->envname("VFIOD_SOCKET")
      ->capture_default_str();
  app.add_option("--timeout,-t", options.timeout_s,
                 "seconds to wait for each reply (0: forever; maps wait unless given)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app.add_flag("--json,-j", options.json,
               "print the RPC result verbatim, one JSON value per line (stable for scripts)");
  app.add_flag("--no-progress", options.no_progress, "no progress bar for long maps");
  app.add_option("--owner,-o", options.owner,
                 "use the container and mapping names of this user (name or uid); "
                 "without it, names are your own");
}

void AddAllCommands(CLI::App& app, Dispatch& dispatch) {
  AddDeviceCommands(app, dispatch);
  AddContainerCommands(app, dispatch);
  AddDmaCommands(app, dispatch);
  AddDaemonCommands(app, dispatch);
  AddBenchCommands(app, dispatch);  // `vfioctl bench`: client/vfioctl/bench.h
}

int Main(int argc, char** argv) {
  CLI::App app{"vfioctl: use VFIO devices and DMA memory through the vfiod daemon"};
  app.footer(
      "Exit status: 0 ok, 1 bad arguments, 2 vfiod unreachable, 3 refused by policy,\n"
      "4 other daemon error, 5 timeout. Containers and mappings live as long as the\n"
      "command's connection unless given --name.");
  app.require_subcommand(1);
  GlobalOptions options;
  Dispatch dispatch;
  AddGlobalOptions(app, options);
  AddAllCommands(app, dispatch);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int code = app.exit(e);  // prints help (code 0) or the parse error
    return code == 0 ? 0 : static_cast<int>(Exit::kUsage);
  }
  options.timeout_given = app.get_option("--timeout")->count() > 0;
  if (!dispatch.action) {
    std::cerr << "vfioctl: no command given (see --help)\n";
    return static_cast<int>(Exit::kUsage);
  }
  Session session(options);
  CmdResult result;
  try {
    result = dispatch.action(session);
  } catch (const nlohmann::json::exception& e) {
    // The daemon's reply did not have the shape this vfioctl expects.
    result =
        std::unexpected(Failure{Exit::kRpcError, std::string("unexpected reply: ") + e.what()});
  }
  std::cout.flush();
  if (!result) {
    std::cerr << "vfioctl: " << result.error().message << '\n';
    return static_cast<int>(result.error().exit);
  }
  return static_cast<int>(Exit::kOk);
}

}  // namespace
}  // namespace vfiod::vfioctl

int main(int argc, char** argv) {
  try {
    return vfiod::vfioctl::Main(argc, argv);
  } catch (const std::exception& e) {
    // Main turns the expected exceptions into exit codes; this is the last line of defence.
    (void)std::fprintf(stderr, "vfioctl: fatal: %s\n", e.what());
    return 70;  // EX_SOFTWARE
  }
}
