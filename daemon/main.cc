// vfiod: the privileged VFIO daemon. Loads the config, picks the kernel (real
// or model), builds the service, and serves the JSON-RPC API on a unix socket
// (its own, or one systemd passes in). Under a service manager's fd store it
// keeps what it holds there, takes over what a previous vfiod left
// (Service::Readopt) and, on SIGTERM/SIGINT, hands everything over to the
// next one (Service::HandOver); started by hand, it stops by releasing every
// container and mapping.
//
// Threads: the main thread runs the io_context (socket I/O, signals, the
// watchdog timer); the rpc server's worker pool runs blocking methods (and
// writes their replies) and the connection-close hooks; the metrics textfile
// writer (metrics.textfile) has a thread of its own.
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/sinks/systemd_sink.h>
#include <spdlog/spdlog.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <systemd/sd-daemon.h>

#include <CLI/CLI.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>

#include "dma/huge_tmpfs.h"
#include "journal/sink.h"
#include "journal/user_budget.h"
#include "kernel/kernel.h"
#include "lifecycle/listen_fds.h"
#include "lifecycle/notify.h"
#include "lifecycle/object_record.h"
#include "lifecycle/record_store.h"
#include "lifecycle/record_writer.h"
#include "lifecycle/stored_fds.h"
#include "rpc/method_registry.h"
#include "rpc/methods.h"
#include "rpc/server.h"
#include "rpc/server_limits.h"
#include "service/config.h"
#include "service/metrics_textfile.h"
#include "service/model_setup.h"
#include "service/service.h"

namespace asio = boost::asio;

namespace vfiod {

extern const char kOpenRpcDocument[];  // generated from proto/openrpc.json

namespace {

struct Options {
  std::string config_path = "/etc/vfiod/vfiod.json";
  std::optional<std::string> socket_path;
  std::optional<std::string> kernel;
  bool foreground = false;
};

/// Whether stderr is the stream systemd connected to the journal (the
/// documented way to tell: JOURNAL_STREAM names fd 2's device and inode).
bool StderrIsJournal() { return journal::IsJournalStream(std::getenv("JOURNAL_STREAM"), 2); }

/// Logging goes to the journal (native protocol, key events as structured
/// entries) or to stderr (plain lines), never to both.
void SetUpLogging(const service::LoggingConfig& config, bool foreground) {
  bool to_journal =
      !foreground && (config.target == service::LogTarget::kJournal ||
                      (config.target == service::LogTarget::kAuto && StderrIsJournal()));
  static journal::JournalSink journal_sink;  // lives as long as the process
  journal::SetSink(to_journal ? &journal_sink : nullptr);
  std::shared_ptr<spdlog::logger> logger;
  if (to_journal) {
    logger = std::make_shared<spdlog::logger>(
        "vfiod", std::make_shared<spdlog::sinks::systemd_sink_mt>("vfiod"));
    logger->set_pattern("%v");  // the journal stamps time and level itself
  } else {
    logger = spdlog::stderr_color_mt("vfiod");
    logger->set_pattern("%Y-%m-%d %H:%M:%S.%e %^%l%$ [%t] %v");
  }
  static constexpr spdlog::level::level_enum kLevels[] = {
      spdlog::level::trace, spdlog::level::debug,    spdlog::level::info, spdlog::level::warn,
      spdlog::level::err,   spdlog::level::critical, spdlog::level::off};
  logger->set_level(kLevels[static_cast<int>(config.level)]);
  spdlog::set_default_logger(logger);
  journal::ProcessUserBudget().Configure(config.user_lines_per_second, config.user_burst);
}

/// Raises RLIMIT_NOFILE's soft limit to the hard limit: every mapping may hold
/// an fd (a memfd) in the daemon, so 65535 mappings need far more than the
/// usual soft 1024. Asio uses epoll, never select(), so fds past 1024 are fine.
void RaiseFdLimit() {
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) != 0) {
    spdlog::warn("getrlimit(RLIMIT_NOFILE): {}", ErrnoError("getrlimit").error().message());
    return;
  }
  const rlim_t soft = limit.rlim_cur;
  if (soft < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    if (::setrlimit(RLIMIT_NOFILE, &limit) != 0) {
      spdlog::warn("setrlimit(RLIMIT_NOFILE, {}): {}", limit.rlim_max,
                   ErrnoError("setrlimit").error().message());
      limit.rlim_cur = soft;
    }
  }
  spdlog::info("open files: soft limit {} (was {}), hard limit {}", limit.rlim_cur, soft,
               limit.rlim_max);
}

/// Whether `name` is one vfiod stores objects under in the fd store.

/// Sends `state` to the service manager, if there is one; a failure is
/// logged (the daemon serves on without it).
void Notify(std::string_view state) {
  if (auto sent = lifecycle::NotifyWithFds(state); !sent) {
    spdlog::warn("sd_notify: {}", sent.error().message());
  }
}

/// What a previous vfiod left in the fd store, sorted against its newest
/// valid state record with the objects' own records merged in
/// (lifecycle/object_record.h, lifecycle/stored_fds.h), and the listening
/// socket.
struct Inherited {
  std::optional<lifecycle::StateRecord> record;
  lifecycle::SortedFds fds;
  /// Own records left in the store: their objects are described (the
  /// service removes them once its own state record describes them too).
  std::vector<std::string> object_records;
};

/// The fds systemd passed: the listening socket (socket activation), if any,
/// and what a previous vfiod left in the fd store. Stored objects the newest
/// record does not describe (stored, then the daemon died before the record
/// named them) are removed from the store and closed; what it describes but
/// did not come back is logged (Service::Readopt releases it).
Inherited InheritedFds() {
  Inherited out;
  auto passed = lifecycle::ListenFds();
  if (!passed) {
    spdlog::error("passed fds: {}", passed.error().message());
    return out;
  }
  if (auto picked = lifecycle::PickStateRecord(*passed)) {
    out.record = std::move(*picked);
    spdlog::info("fd store: state record generation {} ({} containers, {} mappings)",
                 out.record->generation, out.record->containers.size(),
                 out.record->mappings.size());
  } else if (picked.error().code != ENOENT) {
    spdlog::warn("fd store: no usable state record: {}", picked.error().message());
  }
  // Objects created after the newest record (their replies were sent) come
  // with their own records: the record would miss them otherwise.
  const bool had_record = out.record.has_value();
  const lifecycle::MergeReport merged = lifecycle::MergeObjectRecords(out.record, *passed);
  for (const std::string& refused : merged.refused) {
    spdlog::warn("fd store: own record not used: {}", refused);
  }
  if (merged.containers + merged.mappings > 0) {
    spdlog::info(
        "fd store: {} containers and {} mappings newer than the {} added from their own "
        "records",
        merged.containers, merged.mappings, had_record ? "state record" : "(missing) state record");
  }
  out.fds = lifecycle::SortStoredFds(out.record ? &*out.record : nullptr, std::move(*passed));
  const std::string keep_record =
      had_record ? std::string(lifecycle::RecordFdName(out.record->generation)) : std::string();
  for (lifecycle::NamedFd& stray : out.fds.strays) {
    const bool stored = lifecycle::IsStoredObjectName(stray.name);
    const std::string_view object = lifecycle::ObjectOfRecordName(stray.name);
    if (!object.empty() && out.fds.described.contains(std::string(object))) {
      out.object_records.push_back(stray.name);  // stays until a record of ours covers it
    } else if (stored && stray.name != keep_record && !out.fds.described.contains(stray.name)) {
      // A second fd under a name the record describes: only this copy goes.
      spdlog::warn("fd store: {} is not described by the state record: removed", stray.name);
      if (auto removed = lifecycle::RemoveFds(stray.name); !removed) {
        spdlog::warn("fd store: {}", removed.error().message());
      }
    }
    stray.fd.reset();
  }
  out.fds.strays.clear();
  for (const std::string& name : out.fds.missing) {
    spdlog::warn("fd store: {} is described by the state record but did not come back", name);
  }
  return out;
}

/// Drops what Readopt did not take: removed from the store and closed.
void DropInherited(lifecycle::SortedFds& fds) {
  for (auto& [name, fd] : fds.described) {
    spdlog::warn("fd store: dropping {} of a previous vfiod (not taken over)", name);
    for (const std::string& gone : {lifecycle::ObjectRecordName(name), name}) {
      if (auto removed = lifecycle::RemoveFds(gone); !removed) {
        spdlog::warn("fd store: {}", removed.error().message());
      }
    }
    fd.reset();
  }
  fds.described.clear();
}

/// The service's fd store hooks: container fds go to the service manager's
/// store under their names, when there is one.
service::Service::FdStoreHooks FdStoreHooks() {
  service::Service::FdStoreHooks hooks;
  hooks.store = [](const std::string& name, int fd) {
    const int fds[] = {fd};
    if (auto stored = lifecycle::StoreFds(name, fds); !stored) {
      spdlog::warn("fd store: keeping {}: {}", name, stored.error().message());
    }
  };
  hooks.remove = [](const std::string& name) {
    if (auto removed = lifecycle::RemoveFds(name); !removed) {
      spdlog::warn("fd store: removing {}: {}", name, removed.error().message());
    }
  };
  // systemd 254 and later say how many fds the store keeps (FileDescriptorStoreMax=).
  if (const char* max = std::getenv("FDSTORE"); max != nullptr) {
    char* end = nullptr;
    errno = 0;
    const unsigned long long n = std::strtoull(max, &end, 10);
    if (errno == 0 && end != max && *end == '\0') {
      hooks.capacity = n;
    } else {
      spdlog::warn("fd store: FDSTORE={} is not a number: ignored", max);
    }
  }
  return hooks;
}

/// The exit status after daemon.restart: EX_TEMPFAIL, which the unit lists
/// in RestartForceExitStatus= and SuccessExitStatus=.
constexpr int kExitRestart = 75;

/// How long the unnamed objects of a client that died with the previous
/// vfiod wait for its session.resume.
constexpr std::chrono::seconds kResumeGrace{60};

/// Ends the detached sessions (Service::ReleaseExpiredSessions) as their
/// grace periods run out, starting at `next`. Runs on the io thread: a
/// release unmaps, once per restart.
void ArmSessionExpiry(asio::steady_timer& timer, service::Service& service,
                      std::optional<std::chrono::steady_clock::time_point> next) {
  if (!next) {
    return;
  }
  timer.expires_at(*next);
  timer.async_wait([&timer, &service](const boost::system::error_code& ec) {
    if (!ec) {
      ArmSessionExpiry(timer, service, service.ReleaseExpiredSessions());
    }
  });
}

/// Sends WATCHDOG=1 at half the interval systemd asked for, forever.
void ArmWatchdog(asio::steady_timer& timer, std::chrono::microseconds period) {
  timer.expires_after(period);
  timer.async_wait([&timer, period](const boost::system::error_code& ec) {
    if (!ec) {
      Notify("WATCHDOG=1");
      ArmWatchdog(timer, period);
    }
  });
}

/// Refreshes STATUS= for `systemctl status` every 10 s, under systemd only.
void ArmStatus(asio::steady_timer& timer, const service::Service& service) {
  timer.expires_after(std::chrono::seconds(10));
  timer.async_wait([&timer, &service](const boost::system::error_code& ec) {
    if (ec) {
      return;
    }
    auto s = service.Status();
    Notify(fmt::format("STATUS={} clients, {} containers, {} mappings, {} bytes locked{}",
                       s.clients, s.containers, s.mappings, s.locked_bytes,
                       s.detached_sessions == 0
                           ? std::string()
                           : fmt::format(", {} sessions to resume", s.detached_sessions)));
    ArmStatus(timer, service);
  });
}

// Where `thp` memory comes from (dma/huge_tmpfs.h): the configured
// directory (an error if it is no huge tmpfs), else a private mount when
// vfiod may make one, else memfds. False: stop (a configuration error).
bool SetUpThpMemory(const std::optional<std::string>& dir) {
  auto tmpfs = dir ? dma::HugeTmpfs::OpenDirectory(*dir) : dma::HugeTmpfs::MountPrivate();
  if (tmpfs) {
    spdlog::info("thp memory: files on {}", tmpfs->description());
    dma::InstallHugeTmpfs(std::move(*tmpfs));
    return true;
  }
  if (dir) {
    spdlog::critical("thp_tmpfs: {}", tmpfs.error().message());
    return false;
  }
  spdlog::info(
      "thp memory: memfds advised MADV_HUGEPAGE, huge only where "
      "/sys/kernel/mm/transparent_hugepage/shmem_enabled allows it (no private tmpfs: {}; "
      "set thp_tmpfs)",
      tmpfs.error().message());
  return true;
}

int Run(const Options& options) {
  auto config = service::LoadConfig(options.config_path);
  if (!config) {
    spdlog::critical("{}", config.error().message());
    return 78;  // EX_CONFIG
  }
  if (options.socket_path) {
    config->socket.path = *options.socket_path;
  }
  if (options.kernel) {
    config->kernel =
        *options.kernel == "model" ? service::KernelKind::kModel : service::KernelKind::kLinux;
  }
  SetUpLogging(config->logging, options.foreground);
  RaiseFdLimit();
  if (!SetUpThpMemory(config->thp_tmpfs)) {
    return 78;  // EX_CONFIG
  }

  const bool model = config->kernel == service::KernelKind::kModel;
  service::KernelAndSysfs seam =
      model
          ? service::MakeModelKernelAndSysfs(*config)
          : service::KernelAndSysfs{kernel::MakeLinuxKernel(), vfio::PciSysfs(config->sysfs_root)};
  const service::Limits limits = config->limits;
  const service::SocketConfig socket = config->socket;
  service::Service service(std::move(*config), std::move(seam.kernel), std::move(seam.sysfs));
  // The record writer lives shorter than the service (its snapshots read it)
  // and longer than every request (the server is gone before it is).
  std::unique_ptr<lifecycle::RecordWriter> records;
  Inherited inherited = InheritedFds();
  if (!lifecycle::NotifySocketFromEnv().empty()) {
    records = std::make_unique<lifecycle::RecordWriter>(
        [&service] { return service.SnapshotState(); },
        [&service](const lifecycle::StateRecord& record) {
          auto stored = lifecycle::StoreStateRecord(record);
          if (stored && *stored) {
            service.RecordStored(record);  // the own records it covers can go
          }
          return stored;
        },
        [](const Error& e) { spdlog::warn("fd store: state record: {}", e.message()); },
        inherited.record ? inherited.record->generation + 1 : 1);
    auto hooks = FdStoreHooks();
    hooks.changed = [&records] { records->Changed(); };
    hooks.flush = [&records] { records->Flush(); };
    service.SetFdStoreHooks(std::move(hooks));
    service.KeepObjectRecords(inherited.object_records);
  }
  if (inherited.record) {
    (void)service.Readopt(*inherited.record, inherited.fds.described, kResumeGrace);
  }
  DropInherited(inherited.fds);
  if (records && inherited.record) {
    records->Changed();  // what was released leaves the record too
  }

  rpc::MethodRegistry registry;
  rpc::ServiceMethods methods(service, kOpenRpcDocument);
  if (auto ok = methods.Register(registry); !ok) {
    spdlog::critical("registering methods: {}", ok.error().message());
    return 70;  // EX_SOFTWARE
  }
  const rpc::ServerConfig server_config = rpc::ServerConfigFromLimits(limits);

  asio::io_context io(1);  // concurrency hint: only this thread runs it
  auto server = std::make_unique<rpc::Server>(io, registry, server_config);
  server->AddCloseHook([&methods](rpc::ConnectionId id, const rpc::PeerCredentials&) {
    methods.OnConnectionClosed(id);
  });
  // daemon.restart: stop as on SIGTERM (a hand-over, records being kept) and
  // exit with kExitRestart, which the unit restarts (RestartForceExitStatus).
  // The stop waits a moment so the reply reaches the caller first.
  int exit_code = 0;
  asio::steady_timer restart_timer(io);
  if (records) {
    methods.OnRestartRequested([&] {
      restart_timer.expires_after(std::chrono::milliseconds(100));
      restart_timer.async_wait([&](const boost::system::error_code& ec) {
        if (!ec) {
          spdlog::info("daemon.restart: handing over to the next vfiod");
          Notify("STOPPING=1");
          exit_code = kExitRestart;
          server->Stop();
          io.stop();
        }
      });
    });
  }
  Result<void> listening = Ok();
  if (inherited.fds.socket) {
    listening = server->Adopt(std::move(*inherited.fds.socket));
    spdlog::info("serving the socket systemd passed");
  } else {
    listening = server->Listen(socket.path, socket.mode,
                               socket.gid != 0 ? std::optional<gid_t>(socket.gid) : std::nullopt);
    spdlog::info("listening on {}", socket.path);
  }
  if (!listening) {
    spdlog::critical("socket: {}", listening.error().message());
    return 71;  // EX_OSERR
  }
  server->Start();

  asio::signal_set signals(io, SIGTERM, SIGINT);
  signals.async_wait([&](const boost::system::error_code& ec, int signo) {
    if (!ec) {
      spdlog::info("signal {}: shutting down", signo);
      Notify("STOPPING=1");
      server->Stop();
      io.stop();
    }
  });
  asio::steady_timer watchdog(io);
  if (uint64_t usec = 0; sd_watchdog_enabled(0, &usec) > 0 && usec > 0) {
    ArmWatchdog(watchdog, std::chrono::microseconds(usec / 2));
  }
  asio::steady_timer expiry_timer(io);
  ArmSessionExpiry(expiry_timer, service, service.ReleaseExpiredSessions());
  asio::steady_timer status_timer(io);
  if (std::getenv("NOTIFY_SOCKET") != nullptr) {
    ArmStatus(status_timer, service);
  }
  auto status = service.Status();
  Notify(fmt::format("READY=1\nSTATUS=serving API {} on the {} kernel", status.api_version,
                     status.kernel));
  journal::Emit({.kind = journal::Kind::kDaemonReady,
                 .message = fmt::format("vfiod {} ready (kernel {}, extensions: type1v2={} "
                                        "unmap_all={})",
                                        status.version, status.kernel, status.extensions.type1v2,
                                        status.extensions.unmap_all)});

  auto textfile = service::StartMetricsTextfile(service);  // its own thread; null when off
  io.run();
  textfile.reset();
  server->Stop();
  server.reset();  // joins the workers: no handler runs past this point
  if (records) {
    // A successor takes over: the record describes everything as it is, and
    // nothing is released (vaddrs are invalidated; the store keeps the fds).
    records->Flush();
    records.reset();
    const size_t handed = service.HandOver();
    spdlog::info("handed over {} containers to the next vfiod (fd store)", handed);
  } else {
    service.Shutdown();  // named containers too: nothing stays pinned
  }
  journal::Emit({.kind = journal::Kind::kDaemonStopped, .message = "stopped"});
  return exit_code;
}

}  // namespace
}  // namespace vfiod

int main(int argc, char** argv) {
  try {
    vfiod::Options options;
    CLI::App app{"vfiod: VFIO devices and DMA memory for unprivileged programs"};
    app.add_option("--config", options.config_path, "configuration file (JSON)")
        ->capture_default_str();
    app.add_option("--socket", options.socket_path, "listen here instead of socket.path");
    app.add_option("--kernel", options.kernel, "override the config's kernel")
        ->check(CLI::IsMember({"linux", "model"}));
    app.add_flag("--foreground", options.foreground, "log to stderr even under systemd");
    try {
      app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
      return app.exit(e);
    }
    return vfiod::Run(options);
  } catch (const std::exception& e) {
    // Nothing below throws by design; this is the last line of defence.
    (void)std::fprintf(stderr, "vfiod: fatal: %s\n", e.what());
    return 70;  // EX_SOFTWARE
  }
}
