// vfioctl's command groups. Each Add*Commands() adds one noun (or a few
// top-level verbs) to the CLI11 app; a parsed subcommand leaves its work in
// the Dispatch, and main() runs it once parsing succeeded, so no command
// runs on a command line CLI11 rejected.
//
// Adding a command group (e.g. `vfioctl bench`): write commands_<noun>.cc
// with an Add<Noun>Commands() declared here, and call it from main.cc's
// AddAllCommands(). CMake picks the file up by itself.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>

#include "vfioctl/exit_codes.h"
#include "vfioctl/session.h"

namespace vfiod::vfioctl {

using Action = std::function<CmdResult(Session&)>;

/// The action of the subcommand the command line selected.
struct Dispatch {
  Action action;
};

void AddDaemonCommands(CLI::App& app, Dispatch& dispatch);     // ping version status stats rpc
void AddDeviceCommands(CLI::App& app, Dispatch& dispatch);     // device ...
void AddContainerCommands(CLI::App& app, Dispatch& dispatch);  // container ...
void AddDmaCommands(CLI::App& app, Dispatch& dispatch);        // dma ...

/// Makes `sub`, once parsed, select `action`.
void OnParsed(CLI::App* sub, Dispatch& dispatch, Action action);

/// A CLI11 transform accepting sizes and addresses as ParseSize() does ("2M",
/// "1G", "0x100000") and handing the option its value in bytes.
[[nodiscard]] CLI::Validator SizeArg();

/// Runs `method` with `params` and prints the result with `human` (or --json).
[[nodiscard]] CmdResult CallAndEmit(
    Session& session, const std::string& method, const nlohmann::json& params,
    const std::function<void(std::ostream&, const nlohmann::json&)>& human);

/// `dma register` (commands_dma_region.cc), added under `dma`.
void AddRegisterCommand(CLI::App* dma, Dispatch& dispatch);

/// A scatter list "OFF:SIZE[@IOVA],OFF:SIZE[@IOVA],..." as dma.map_fd's
/// segments array.
[[nodiscard]] std::expected<nlohmann::json, Failure> ParseSegmentList(const std::string& text);

/// The table of mappings (dma.list entries, or container.info's mappings).
void PrintMappingTable(std::ostream& out, const nlohmann::json& mappings);

}  // namespace vfiod::vfioctl
