#include "service/config.h"

#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <set>
#include <utility>
#include <vector>

#include "proto/page_sizes.h"
#include "proto/unique_fd.h"
#include "service/config_reader.h"

namespace vfiod::service {
namespace {

using namespace config_detail;  // NOLINT(google-build-using-namespace): file-local readers

constexpr size_t kMaxConfigBytes = 16 << 20;

template <class Enum, size_t N>
Enum ReadEnum(const Json& value, const std::string& path,
              const std::pair<std::string_view, Enum> (&names)[N]) {
  std::string text = value.is_string() ? value.get<std::string>() : std::string();
  std::string expected;
  for (const auto& [name, kind] : names) {
    if (text == name) {
      return kind;
    }
    expected += (expected.empty() ? "\"" : ", \"") + std::string(name) + "\"";
  }
  Bad(path, "expected one of " + expected);
}

constexpr std::pair<std::string_view, KernelKind> kKernelNames[] = {{"linux", KernelKind::kLinux},
                                                                    {"model", KernelKind::kModel}};
constexpr std::pair<std::string_view, LogLevel> kLevelNames[] = {
    {"trace", LogLevel::kTrace}, {"debug", LogLevel::kDebug}, {"info", LogLevel::kInfo},
    {"warn", LogLevel::kWarn},   {"error", LogLevel::kError}, {"critical", LogLevel::kCritical},
    {"off", LogLevel::kOff}};
constexpr std::pair<std::string_view, LogTarget> kTargetNames[] = {
    {"auto", LogTarget::kAuto}, {"journal", LogTarget::kJournal}, {"stderr", LogTarget::kStderr}};
constexpr std::pair<std::string_view, WithoutReset> kWithoutResetNames[] = {
    {"refuse", WithoutReset::kRefuse}, {"hand_over", WithoutReset::kHandOver}};

template <class Enum, size_t N>
std::string_view EnumName(Enum value, const std::pair<std::string_view, Enum> (&names)[N]) {
  for (const auto& [name, kind] : names) {
    if (kind == value) {
      return name;
    }
  }
  return "?";
}

SocketConfig ReadSocket(const Json& j, const std::string& path, const NameResolver& names) {
  CheckObject(j, path, {"path", "group", "mode"});
  SocketConfig socket;
  IfPresent(j, path, "path", [&](const Json& v, const std::string& p) {
    socket.path = ReadAbsolutePath(v, p);
    if (socket.path.size() >= sizeof(sockaddr_un{}.sun_path)) {
      Bad(p, "longer than a unix socket path may be (" +
                 std::to_string(sizeof(sockaddr_un{}.sun_path) - 1) + " bytes)");
    }
  });
  IfPresent(j, path, "group", [&](const Json& v, const std::string& p) {
    socket.group = v.is_null() ? std::string() : ReadString(v, p);
  });
  if (!socket.group.empty()) {
    socket.gid = ReadGroupId(Json(socket.group), Key(path, "group"), names);
  }
  IfPresent(j, path, "mode",
            [&](const Json& v, const std::string& p) { socket.mode = ReadMode(v, p); });
  return socket;
}

constexpr std::string_view kLimitKeys[] = {"max_frame_bytes",       "max_inflight_per_client",
                                           "max_clients",           "worker_threads",
                                           "map_chunk_bytes",       "max_batch",
                                           "max_regions",           "max_output_bytes",
                                           "max_batch_reply_bytes", "max_clients_per_user",
                                           "idle_timeout",          "line_timeout",
                                           "write_timeout",         "max_locked_bytes",
                                           "max_stored_fds",        "max_stored_fds_per_user"};

// A size in [min, max] bytes; `range` says so in the message.
void ReadBoundedSize(const Json& j, const std::string& path, std::string_view key, uint64_t min,
                     uint64_t max, std::string_view range, uint64_t& out) {
  IfPresent(j, path, key, [&](const Json& v, const std::string& p) {
    out = ReadSize(v, p, false);
    if (out < min || out > max) {
      Bad(p, "must be between " + std::string(range));
    }
  });
}

Limits ReadLimits(const Json& j, const std::string& path) {
  CheckObject(j, path, kLimitKeys);
  Limits limits;
  ReadBoundedSize(j, path, "max_output_bytes", 64ULL << 10, 1ULL << 30, "64K and 1G",
                  limits.max_output_bytes);
  ReadBoundedSize(j, path, "max_batch_reply_bytes", 4ULL << 10, 1ULL << 30, "4K and 1G",
                  limits.max_batch_reply_bytes);
  auto seconds = [&](std::string_view key, uint32_t& out) {
    IfPresent(j, path, key, [&](const Json& v, const std::string& p) {
      out = static_cast<uint32_t>(ReadInteger(v, p, 0, 86400));
    });
  };
  seconds("idle_timeout", limits.idle_timeout);
  seconds("line_timeout", limits.line_timeout);
  seconds("write_timeout", limits.write_timeout);
  IfPresent(j, path, "max_frame_bytes", [&](const Json& v, const std::string& p) {
    limits.max_frame_bytes = ReadSize(v, p, false);
    if (limits.max_frame_bytes < 4096 || limits.max_frame_bytes > (256ULL << 20)) {
      Bad(p, "must be between 4K and 256M");
    }
  });
  auto count = [&](std::string_view key, uint32_t max, uint32_t& out) {
    IfPresent(j, path, key, [&](const Json& v, const std::string& p) {
      out = static_cast<uint32_t>(ReadInteger(v, p, 1, max));
    });
  };
  count("max_inflight_per_client", 65536, limits.max_inflight_per_client);
  count("max_clients", 65536, limits.max_clients);
  count("worker_threads", 256, limits.worker_threads);
  count("max_batch", 65536, limits.max_batch);
  count("max_regions", 65536, limits.max_regions);
  count("max_clients_per_user", 65536, limits.max_clients_per_user);
  count("max_stored_fds", 1U << 20, limits.max_stored_fds);
  count("max_stored_fds_per_user", 1U << 20, limits.max_stored_fds_per_user);
  IfPresent(j, path, "map_chunk_bytes", [&](const Json& v, const std::string& p) {
    limits.map_chunk_bytes = ReadSize(v, p, false);
    if (limits.map_chunk_bytes == 0 || limits.map_chunk_bytes % kPage4K != 0) {
      Bad(p, "must be a non-zero multiple of the 4K page size");
    }
  });
  IfPresent(j, path, "max_locked_bytes", [&](const Json& v, const std::string& p) {
    // null: the default, a share of MemTotal resolved at start.
    limits.max_locked_bytes =
        v.is_null() ? std::nullopt : std::optional<uint64_t>(ReadSize(v, p, true));
  });
  return limits;
}

constexpr std::string_view kLoggingKeys[] = {"level", "target", "user_lines_per_second",
                                             "user_burst"};

LoggingConfig ReadLogging(const Json& j, const std::string& path) {
  CheckObject(j, path, kLoggingKeys);
  LoggingConfig logging;
  IfPresent(j, path, "level", [&](const Json& v, const std::string& p) {
    logging.level = ReadEnum(v, p, kLevelNames);
  });
  IfPresent(j, path, "target", [&](const Json& v, const std::string& p) {
    logging.target = ReadEnum(v, p, kTargetNames);
  });
  IfPresent(j, path, "user_lines_per_second", [&](const Json& v, const std::string& p) {
    logging.user_lines_per_second = static_cast<uint32_t>(ReadInteger(v, p, 0, 100000));
  });
  IfPresent(j, path, "user_burst", [&](const Json& v, const std::string& p) {
    logging.user_burst = static_cast<uint32_t>(ReadInteger(v, p, 1, 1000000));
  });
  return logging;
}

constexpr std::string_view kMetricsKeys[] = {"textfile", "interval_seconds"};

MetricsConfig ReadMetrics(const Json& j, const std::string& path) {
  CheckObject(j, path, kMetricsKeys);
  MetricsConfig metrics;
  IfPresent(j, path, "textfile", [&](const Json& v, const std::string& p) {
    if (v.is_null()) {
      return;
    }
    std::string file = ReadAbsolutePath(v, p);
    std::string_view base = std::string_view(file).substr(file.rfind('/') + 1);
    // node_exporter reads only *.prom; a dot file would be taken for a temp file.
    if (!base.ends_with(".prom") || base.size() <= 5 || base.starts_with('.')) {
      Bad(p, "expected a file named *.prom (not a dot file), not \"" + file + "\"");
    }
    metrics.textfile = std::move(file);
  });
  IfPresent(j, path, "interval_seconds", [&](const Json& v, const std::string& p) {
    metrics.interval_seconds = static_cast<uint32_t>(ReadInteger(v, p, 1, 86400));
  });
  return metrics;
}

ResetConfig ReadReset(const Json& j, const std::string& path) {
  CheckObject(j, path, {"between_owners", "without_reset", "on_destroy"});
  ResetConfig reset;
  IfPresent(j, path, "between_owners",
            [&](const Json& v, const std::string& p) { reset.between_owners = ReadBool(v, p); });
  IfPresent(j, path, "without_reset", [&](const Json& v, const std::string& p) {
    reset.without_reset = ReadEnum(v, p, kWithoutResetNames);
  });
  IfPresent(j, path, "on_destroy",
            [&](const Json& v, const std::string& p) { reset.on_destroy = ReadBool(v, p); });
  return reset;
}

constexpr std::string_view kDeviceKeys[] = {"release_grace_seconds"};

DeviceConfig ReadDevice(const Json& j, const std::string& path) {
  CheckObject(j, path, kDeviceKeys);
  DeviceConfig device;
  IfPresent(j, path, "release_grace_seconds", [&](const Json& v, const std::string& p) {
    device.release_grace_seconds = static_cast<uint32_t>(ReadInteger(v, p, 0, 3600));
  });
  return device;
}

}  // namespace

// Defined in config_policy.cc and config_model.cc.
PolicyConfig ReadPolicySection(const Json& j, const std::string& path, const NameResolver& names);
ModelConfig ReadModelSection(const Json& j, const std::string& path);

namespace {

Config ReadConfig(const Json& j, const NameResolver& names) {
  CheckObject(j, "",
              {"socket", "kernel", "sysfs_root", "thp_tmpfs", "limits", "logging", "metrics",
               "policy", "reset", "device", "model"});
  Config config;
  if (auto it = j.find("socket"); it != j.end()) {
    config.socket = ReadSocket(*it, "socket", names);
  } else {
    config.socket = ReadSocket(Json::object(), "socket", names);
  }
  IfPresent(j, "", "kernel", [&](const Json& v, const std::string& p) {
    config.kernel = ReadEnum(v, p, kKernelNames);
  });
  IfPresent(j, "", "sysfs_root", [&](const Json& v, const std::string& p) {
    config.sysfs_root = ReadAbsolutePath(v, p);
  });
  IfPresent(j, "", "thp_tmpfs", [&](const Json& v, const std::string& p) {
    if (!v.is_null()) {
      config.thp_tmpfs = ReadAbsolutePath(v, p);
    }
  });
  IfPresent(j, "", "limits",
            [&](const Json& v, const std::string& p) { config.limits = ReadLimits(v, p); });
  IfPresent(j, "", "logging",
            [&](const Json& v, const std::string& p) { config.logging = ReadLogging(v, p); });
  IfPresent(j, "", "metrics",
            [&](const Json& v, const std::string& p) { config.metrics = ReadMetrics(v, p); });
  IfPresent(j, "", "policy", [&](const Json& v, const std::string& p) {
    config.policy = ReadPolicySection(v, p, names);
  });
  IfPresent(j, "", "reset",
            [&](const Json& v, const std::string& p) { config.reset = ReadReset(v, p); });
  IfPresent(j, "", "device",
            [&](const Json& v, const std::string& p) { config.device = ReadDevice(v, p); });
  IfPresent(j, "", "model",
            [&](const Json& v, const std::string& p) { config.model = ReadModelSection(v, p); });
  return config;
}

// nlohmann::json keeps the last of duplicate keys silently; a duplicate in a
// config is almost always a mistake, so the parser callback refuses it.
Json ParseStrict(std::string_view text) {
  std::vector<std::set<std::string>> open_objects;
  auto refuse_duplicates = [&](int /*depth*/, Json::parse_event_t event, Json& parsed) {
    if (event == Json::parse_event_t::object_start) {
      open_objects.emplace_back();
    } else if (event == Json::parse_event_t::object_end) {
      open_objects.pop_back();
    } else if (event == Json::parse_event_t::key) {
      const auto& key = parsed.get_ref<const std::string&>();
      if (!open_objects.back().insert(key).second) {
        Bad("", "duplicate key \"" + key + "\"");
      }
    }
    return true;
  };
  return Json::parse(text, refuse_duplicates);
}

}  // namespace

NameResolver SystemNameResolver() {
  NameResolver names;
  names.user = [](const std::string& name) -> std::optional<uid_t> {
    std::vector<char> buffer(16384);
    passwd entry{};
    passwd* found = nullptr;
    if (getpwnam_r(name.c_str(), &entry, buffer.data(), buffer.size(), &found) != 0 || !found) {
      return std::nullopt;
    }
    return found->pw_uid;
  };
  names.group = [](const std::string& name) -> std::optional<gid_t> {
    std::vector<char> buffer(65536);  // large groups list their members here
    group entry{};
    group* found = nullptr;
    if (getgrnam_r(name.c_str(), &entry, buffer.data(), buffer.size(), &found) != 0 || !found) {
      return std::nullopt;
    }
    return found->gr_gid;
  };
  return names;
}

std::span<const std::string_view> LimitKeys() { return kLimitKeys; }
std::span<const std::string_view> MetricsKeys() { return kMetricsKeys; }
std::span<const std::string_view> DeviceKeys() { return kDeviceKeys; }
std::span<const std::string_view> LoggingKeys() { return kLoggingKeys; }

Result<Config> ParseConfig(std::string_view text, const NameResolver& names) {
  try {
    return ReadConfig(ParseStrict(text), names);
  } catch (const ConfigError& e) {
    return Fail(EINVAL, "config", e.path.empty() ? e.message : e.path + ": " + e.message);
  } catch (const std::exception& e) {  // nlohmann::json::parse_error and friends
    return Fail(EINVAL, "config", e.what());
  }
}

Result<Config> LoadConfig(const std::string& path, const NameResolver& names) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) {
    return ErrnoError("open config " + path);
  }
  std::string text;
  char chunk[65536];
  for (;;) {
    ssize_t n = ::read(fd.get(), chunk, sizeof(chunk));
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0) {
      return ErrnoError("read config " + path);
    }
    if (n == 0) {
      break;
    }
    text.append(chunk, static_cast<size_t>(n));
    if (text.size() > kMaxConfigBytes) {
      return Fail(EFBIG, "read config " + path, "larger than 16 MiB");
    }
  }
  auto config = ParseConfig(text, names);
  if (!config) {
    config.error().op = "config " + path;
  }
  return config;
}

std::string_view KernelKindName(KernelKind kind) { return EnumName(kind, kKernelNames); }
std::string_view LogLevelName(LogLevel level) { return EnumName(level, kLevelNames); }
std::string_view LogTargetName(LogTarget target) { return EnumName(target, kTargetNames); }

std::string_view WithoutResetName(WithoutReset choice) {
  return EnumName(choice, kWithoutResetNames);
}

}  // namespace vfiod::service
