// Top-level verbs about the daemon itself: ping, version, status, stats
// (--prometheus: the metrics method's text, printed as the daemon wrote it),
// `daemon restart`, and `rpc METHOD [PARAMS]`, a passthrough to any method.
#include <chrono>
#include <optional>
#include <string>
#include <thread>

#include "vfioctl/commands.h"
#include "vfioctl/format.h"
#include "vfioctl/sizes.h"
#include "vfioctl/table.h"

namespace vfiod::vfioctl {

using nlohmann::json;

namespace {

CmdResult Ping(Session& session) {
  auto start = std::chrono::steady_clock::now();
  auto reply = session.Call("ping");
  if (!reply) {
    return std::unexpected(std::move(reply).error());
  }
  auto us = std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() -
                                                                  start)
                .count();
  session.Emit(reply->result, [&](std::ostream& out) {
    out << "vfiod is alive at " << session.options().socket << " (round trip " << us << " us)\n";
  });
  return {};
}

void PrintStatus(std::ostream& out, const json& s) {
  PrintField(out, "version", Field(s, "version") + " (API " + Field(s, "api_version") + ")");
  PrintField(out, "kernel", Field(s, "kernel"));
  std::string ext;
  for (const auto& [name, on] : Member(s, "extensions").items()) {
    ext += (ext.empty() ? "" : " ") + name + (on.is_boolean() && on.get<bool>() ? "=yes" : "=no");
  }
  PrintField(out, "extensions", ext.empty() ? "-" : ext);
  PrintField(out, "uptime", Field(s, "uptime_s") + " s");
  PrintField(out, "clients", Field(s, "clients"));
  PrintField(out, "containers", Field(s, "containers"));
  PrintField(out, "mappings", Field(s, "mappings"));
  const bool capped = s.contains("max_locked_bytes") && !s["max_locked_bytes"].is_null();
  PrintField(out, "locked memory",
             SizeField(s, "locked_bytes") + " (hugetlb regions " +
                 SizeField(s, "region_locked_bytes") + "), cap " +
                 (capped ? SizeField(s, "max_locked_bytes") : std::string("unlimited")));
  PrintField(out, "dma entries", Field(s, "dma_entries"));
  const json& restart = Member(s, "restart");
  const json& fd_store = Member(restart, "fd_store");
  const bool store = fd_store.is_boolean() && fd_store.get<bool>();
  PrintField(out, "restart",
             store
                 ? "survives a restart (fd store in use, " + Field(restart, "stored_fds_charged") +
                       " of " + Field(restart, "max_stored_fds") + " fds charged, at most " +
                       Field(restart, "max_stored_fds_per_user") + " to one user); " +
                       Field(restart, "detached_sessions") + " sessions wait for session.resume"
                 : std::string("everything is released when vfiod stops (no fd store: started "
                               "by hand)"));
  // Groups of destroyed containers a handed-out device fd still holds.
  for (const json& l : Member(s, "lingering")) {
    std::string holders;
    for (const json& u : Member(l, "holders")) {
      holders += (holders.empty() ? "uid " : ", uid ") + u.dump();
    }
    PrintField(out, "lingering",
               "groups " + Field(l, "groups") + " of container " + Field(l, "container") +
                   " held by a device fd of " + (holders.empty() ? "?" : holders) + " for " +
                   Field(l, "seconds") + " s");
  }
}

std::string Counters(const json& c) {
  return Field(c, "calls") + " calls, " + SizeField(c, "bytes") + ", " + Field(c, "ioctls") +
         " ioctls";
}

void PrintStats(std::ostream& out, const json& s) {
  PrintField(out, "requests", Field(s, "requests"));
  PrintField(out, "errors", Field(s, "errors"));
  PrintField(out, "map", Counters(Member(s, "map")));
  PrintField(out, "unmap", Counters(Member(s, "unmap")));
  Table table({"METHOD", "CALLS", "ERRORS", "AVG_US", "MAX_US"});
  for (const auto& [name, m] : Member(s, "by_method").items()) {
    uint64_t calls = m.value("calls", uint64_t{0});
    uint64_t total = m.value("total_us", uint64_t{0});
    table.AddRow({name, Field(m, "calls"), Field(m, "errors"),
                  calls ? std::to_string(total / calls) : "-", Field(m, "max_us")});
  }
  out << '\n';
  table.Print(out);
}

struct RpcOptions {
  std::string method;
  std::string params;
};

/// daemon.restart, then waits for the next vfiod to answer on the socket and
/// says what it took over.
CmdResult Restart(Session& session) {
  auto reply = session.Call("daemon.restart");
  if (!reply) {
    return std::unexpected(std::move(reply).error());
  }
  // The old vfiod closes this connection when it goes; the next one answers
  // on the same socket (queued by the socket unit meanwhile).
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (std::chrono::steady_clock::now() < deadline && session.Call("ping")) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  std::optional<client::CallResult> status;
  while (!status && std::chrono::steady_clock::now() < deadline) {
    if (auto c = client::Client::Connect(session.options().socket)) {
      if (auto s = c->Call("status")) {
        status = std::move(s);
        break;
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  if (!status) {
    return std::unexpected(Failure{Exit::kUnreachable,
                                   "daemon restart: vfiod handed over, but no new vfiod answered "
                                   "within 60 s (is it running under systemd?)"});
  }
  session.Emit((*status)->result, [&](std::ostream& out) {
    out << "vfiod restarted: the new instance took over " << Field((*status)->result, "containers")
        << " containers and " << Field((*status)->result, "mappings") << " mappings\n";
  });
  return {};
}

CmdResult Rpc(Session& session, const RpcOptions& o) {
  json params = nullptr;
  if (!o.params.empty()) {
    params = json::parse(o.params, nullptr, false);
    if (params.is_discarded() || !(params.is_object() || params.is_array())) {
      return UsageError(
          "rpc: PARAMS must be a JSON object or array, e.g. '{\"bdf\": \"0000:00:03.0\"}'");
    }
  }
  auto reply = session.Call(o.method, params);
  if (!reply) {
    return std::unexpected(std::move(reply).error());
  }
  session.Emit(reply->result, [&](std::ostream& out) {
    out << reply->result.dump(2, ' ', false, json::error_handler_t::replace) << '\n';
    if (!reply->fds.empty()) {
      out << "(the reply carried " << reply->fds.size()
          << " fd(s); vfioctl closes them when it exits)\n";
    }
  });
  return {};
}

}  // namespace

void AddDaemonCommands(CLI::App& app, Dispatch& dispatch) {
  OnParsed(app.add_subcommand("ping", "Check that vfiod answers"), dispatch, Ping);
  OnParsed(app.add_subcommand("version", "The daemon's version and API version"), dispatch,
           [](Session& s) {
             return CallAndEmit(s, "version", nullptr, [](std::ostream& out, const json& r) {
               out << "vfiod " << Field(r, "version") << ", API " << Field(r, "api") << '\n';
             });
           });
  OnParsed(app.add_subcommand("status", "Daemon status: kernel, extensions, totals"), dispatch,
           [](Session& s) { return CallAndEmit(s, "status", nullptr, PrintStatus); });
  auto prometheus = std::make_shared<bool>(false);
  CLI::App* stats = app.add_subcommand("stats", "Request and map/unmap counters");
  stats->add_flag("--prometheus", *prometheus,
                  "print status and stats in the Prometheus text format (the daemon's metrics "
                  "method renders it)");
  OnParsed(stats, dispatch, [prometheus](Session& s) {
    if (*prometheus) {
      return CallAndEmit(s, "metrics", nullptr,
                         [](std::ostream& out, const json& r) { out << Field(r, "text"); });
    }
    return CallAndEmit(s, "stats", nullptr, PrintStats);
  });

  CLI::App* daemon = app.add_subcommand("daemon", "The daemon itself");
  daemon->require_subcommand(1);
  OnParsed(
      daemon->add_subcommand(
          "restart", "Root: restart vfiod keeping every container, mapping and session (fd store)"),
      dispatch, Restart);

  auto o = std::make_shared<RpcOptions>();
  CLI::App* rpc = app.add_subcommand(
      "rpc", "Call any method: vfioctl rpc METHOD ['{\"param\": ...}'] (prints the result JSON)");
  rpc->add_option("method", o->method, "method name, e.g. device.info")->required();
  rpc->add_option("params", o->params, "params as a JSON object or array");
  OnParsed(rpc, dispatch, [o](Session& s) { return Rpc(s, *o); });
}

}  // namespace vfiod::vfioctl
