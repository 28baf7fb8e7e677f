// The daemon's configuration: one JSON file (config/vfiod.json documents every
// key in config/README.md), loaded and validated into the typed structs below.
// Validation is strict: an unknown key, a wrong type or an impossible value is
// refused with the key's JSON path ("policy.rules[1].quota.locked_bytes: ..."),
// so a typo never silently falls back to a default.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <limits>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "proto/result.h"

namespace vfiod::service {

/// A quota value meaning "no limit" (written "unlimited" in the file).
inline constexpr uint64_t kUnlimited = std::numeric_limits<uint64_t>::max();

/// Where and how the daemon listens when it creates the socket itself (under
/// systemd, vfiod.socket creates it with the same path, group and mode).
struct SocketConfig {
  std::string path = "/run/vfiod/vfiod.sock";  ///< absolute, shorter than sun_path
  std::string group = "vfio-users";            ///< group owning the socket; "" (null
                                               ///< in the file): keep the daemon's group
  std::optional<gid_t> gid;                    ///< `group` resolved at load time
  mode_t mode = 0660;                          ///< permission bits, at most 0777
};

enum class KernelKind { kLinux, kModel };

struct Limits {
  uint64_t max_frame_bytes = 1ULL << 20;        ///< largest JSON-RPC line accepted
  uint32_t max_inflight_per_client = 32;        ///< requests one connection may have running
  uint32_t max_clients = 128;                   ///< concurrent connections
  uint32_t worker_threads = 2;                  ///< pool running blocking handlers (maps)
  uint64_t map_chunk_bytes = 1ULL << 30;        ///< largest single VFIO_IOMMU_MAP_DMA; page-aligned
  uint32_t max_batch = 256;                     ///< largest JSON-RPC batch array
  uint32_t max_regions = 256;                   ///< registered regions per session (dma.register)
  uint64_t max_output_bytes = 8ULL << 20;       ///< replies queued for one connection before
                                                ///< the server stops reading it
  uint64_t max_batch_reply_bytes = 1ULL << 20;  ///< reply bytes of one batch past which its
                                                ///< remaining elements are not run
  uint32_t max_clients_per_user = 16;           ///< connections one non-root uid may hold
  uint32_t idle_timeout = 300;                  ///< seconds a connection may sit idle; 0: forever
  uint32_t line_timeout = 10;                   ///< seconds an incomplete line may wait; 0: forever
  uint32_t write_timeout = 60;  ///< seconds replies may wait unread (socket full); 0: forever
  /// Bytes vfiod may hold locked for all clients together (root's included):
  /// a machine safety limit above the per-user quotas. kUnlimited for none;
  /// nullopt (the key absent or null): kDefaultLockedShare of MemTotal, read at start
  /// (ResolveMaxLockedBytes).
  std::optional<uint64_t> max_locked_bytes;
  /// Fds vfiod's objects may keep in the service manager's fd store, all
  /// clients together (FdBudget); lowered at start to what the service
  /// manager says it keeps ($FDSTORE), less the two state records.
  uint32_t max_stored_fds = 65000;
  /// The most of it one non-root uid's objects may be charged (root: no share).
  uint32_t max_stored_fds_per_user = 4096;
  friend bool operator==(const Limits&, const Limits&) = default;
};

/// The keys of the "limits" section, as the parser accepts them (tests check
/// that each one reaches the component that enforces it).
[[nodiscard]] std::span<const std::string_view> LimitKeys();

/// The default limits.max_locked_bytes as a share of MemTotal: 3/4 leaves the
/// rest of the machine room to run (and vfiod's clients room to be killed).
inline constexpr uint64_t kDefaultLockedShareNum = 3;
inline constexpr uint64_t kDefaultLockedShareDen = 4;

enum class LogLevel { kTrace, kDebug, kInfo, kWarn, kError, kCritical, kOff };
enum class LogTarget { kAuto, kJournal, kStderr };

struct LoggingConfig {
  LogLevel level = LogLevel::kInfo;
  LogTarget target = LogTarget::kAuto;  ///< auto: journal under systemd, else stderr
  /// Each non-root user's requests may cause this many log lines a second,
  /// at most user_burst at once (journal/user_budget.h); 0: no limit.
  uint32_t user_lines_per_second = 10;  ///< 0 … 100000
  uint32_t user_burst = 200;            ///< 1 … 1000000
};

/// The Prometheus textfile vfiod writes for node_exporter's textfile
/// collector (service/metrics_textfile.h). Off unless `textfile` is set.
struct MetricsConfig {
  /// Absolute path of a file named `*.prom`; nullopt (absent or null): none.
  std::optional<std::string> textfile;
  uint32_t interval_seconds = 15;  ///< between two writes, 1 … 86400
  friend bool operator==(const MetricsConfig&, const MetricsConfig&) = default;
};

/// The keys of the "metrics" section, as the parser accepts them (a test
/// checks each is documented and reaches the writer).
[[nodiscard]] std::span<const std::string_view> MetricsKeys();
/// The keys the "device" section accepts (for the documentation test).
[[nodiscard]] std::span<const std::string_view> DeviceKeys();
/// The keys of the "logging" section.
[[nodiscard]] std::span<const std::string_view> LoggingKeys();

/// Per-identity resource limits. Each field is a count, or kUnlimited.
struct Quota {
  uint64_t locked_bytes = 0;  ///< pinned (DMA-mapped) memory, all mappings together
  uint64_t mappings = 0;      ///< live DMA mappings
  uint64_t containers = 0;    ///< live containers
  friend bool operator==(const Quota&, const Quota&) = default;
};

/// The quota a rule grants when it has no "quota" key, or lacks a field.
inline constexpr Quota kDefaultRuleQuota{
    .locked_bytes = 1ULL << 30, .mappings = 1024, .containers = 4};

/// One device pattern of a rule: a PCI address, a vendor:device id, or "*".
struct DevicePattern {
  enum class Kind { kAny, kBdf, kId } kind = Kind::kAny;
  std::string bdf;      ///< kBdf: canonical lower-case "dddd:bb:dd.f"
  uint16_t vendor = 0;  ///< kId
  uint16_t device = 0;  ///< kId
  std::string text;     ///< as written, for messages
};

/// One policy rule: who (users or groups) may use which devices, and how much.
struct PolicyRule {
  std::vector<uid_t> uids;  ///< users, names resolved at load time
  std::vector<gid_t> gids;  ///< groups, names resolved at load time
  bool any_user = false;    ///< "*" in users: the rule applies to everyone
  std::vector<DevicePattern> devices;
  bool may_bind = false;  ///< may bind/unbind matching devices to vfio-pci
  Quota quota = kDefaultRuleQuota;
};

struct PolicyConfig {
  std::vector<PolicyRule> rules;
  std::vector<std::string> root_only;  ///< method names only uid 0 may call
};

struct IovaRange {
  uint64_t start = 0;
  uint64_t last = 0;  ///< inclusive
};

/// A PCI device of the model kernel's topology.
struct ModelDevice {
  std::string bdf;  ///< canonical "dddd:bb:dd.f"
  uint16_t vendor = 0;
  uint16_t device = 0;
  uint32_t group = 0;  ///< IOMMU group number
  bool bound = false;  ///< bound to vfio-pci at start
};

/// The machine the model kernel pretends to be (used when kernel == kModel).
struct ModelConfig {
  std::vector<ModelDevice> devices;
  /// Defaults: the x86 ranges the QEMU VM reports (the MSI window excluded).
  std::vector<IovaRange> iova_ranges{{0, 0xfedfffff}, {0xfef00000, 0x7fffffffff}};
  uint32_t dma_entry_limit = 65535;  ///< vfio_iommu_type1's default
  /// Microseconds each VFIO_IOMMU_MAP_DMA sleeps per MiB it maps (0: none),
  /// outside the model's lock, as pinning takes time on Linux: long maps for
  /// fairness tests and benchmarks (kernel::MapDelayKernel).
  uint32_t map_dma_us_per_mib = 0;
};

/// What vfiod does when a device reset is due but the kernel offers none.
enum class WithoutReset {
  kRefuse,    ///< device.open is refused (PermissionDenied, ENOTTY or EPERM)
  kHandOver,  ///< the device goes out anyway; the reply says "unavailable"
};

/// Device resets around tenants ("reset" section; service_handover.cc).
struct ResetConfig {
  /// Reset a device before it is handed to a user other than those who had
  /// it since its last reset (device.open).
  bool between_owners = true;
  WithoutReset without_reset = WithoutReset::kRefuse;
  /// Also reset every device handed out of a container when it is destroyed.
  bool on_destroy = false;
  friend bool operator==(const ResetConfig&, const ResetConfig&) = default;
};

/// Devices vfiod holds ("device" section; service_release.cc).
struct DeviceConfig {
  /// Seconds between the kernel's request for a device (an unbind or a hot
  /// unplug while vfiod holds it) and the revoke of the container holding
  /// it; 0: at once.
  uint32_t release_grace_seconds = 10;
  friend bool operator==(const DeviceConfig&, const DeviceConfig&) = default;
};

struct Config {
  SocketConfig socket;
  KernelKind kernel = KernelKind::kLinux;
  std::string sysfs_root = "/sys";
  /// A directory on a tmpfs mounted huge=within_size for `thp` memory
  /// (dma::HugeTmpfs::OpenDirectory); nullopt: vfiod mounts a private one if
  /// it may, else uses memfds (main.cc).
  std::optional<std::string> thp_tmpfs;
  Limits limits;
  LoggingConfig logging;
  MetricsConfig metrics;
  PolicyConfig policy;
  ResetConfig reset;
  DeviceConfig device;
  ModelConfig model;
};

/// Resolves user and group names to ids; nullopt when the name is unknown.
/// The default one asks the system (getpwnam_r / getgrnam_r); tests pass their own.
struct NameResolver {
  std::function<std::optional<uid_t>(const std::string&)> user;
  std::function<std::optional<gid_t>(const std::string&)> group;
};
[[nodiscard]] NameResolver SystemNameResolver();

/// Parses and validates a config document. Every key is optional; absent keys
/// take the defaults above. Errors (all EINVAL, op "config"): malformed JSON
/// (detail names line and column), unknown key, wrong type, impossible value,
/// unknown user or group name; the detail starts with the key's JSON path.
[[nodiscard]] Result<Config> ParseConfig(std::string_view text,
                                         const NameResolver& names = SystemNameResolver());

/// Reads and parses the file at `path`. Errors: those of ParseConfig (op names
/// the file), or the errno of opening/reading it (ENOENT, EACCES, EISDIR...).
[[nodiscard]] Result<Config> LoadConfig(const std::string& path,
                                        const NameResolver& names = SystemNameResolver());

/// Parses a size: a non-negative integer or a string of digits with an optional
/// binary suffix K, M, G or T ("512M" = 512 MiB). nullopt when malformed or it overflows.
[[nodiscard]] std::optional<uint64_t> ParseSize(std::string_view text);

/// kDefaultLockedShare of the MemTotal line of `meminfo` (the text of
/// /proc/meminfo); nullopt when it has no well-formed MemTotal line.
[[nodiscard]] std::optional<uint64_t> DefaultMaxLockedBytes(std::string_view meminfo);

/// limits.max_locked_bytes when set, else DefaultMaxLockedBytes of
/// `meminfo_path`'s text; kUnlimited when that file cannot be read or parsed
/// (the caller logs it: the per-user quotas still apply).
[[nodiscard]] uint64_t ResolveMaxLockedBytes(const Limits& limits,
                                             const std::string& meminfo_path = "/proc/meminfo");

/// Canonical lower-case "dddd:bb:ss.f" for a full PCI address (the domain
/// required: a file names devices exactly); nullopt if malformed.
/// vfio::NormalizeBdf's rules.
[[nodiscard]] std::optional<std::string> CanonicalBdf(std::string_view text);

/// Lower-case names as written in the file ("linux", "info", "journal").
[[nodiscard]] std::string_view KernelKindName(KernelKind kind);
[[nodiscard]] std::string_view LogLevelName(LogLevel level);
[[nodiscard]] std::string_view LogTargetName(LogTarget target);
[[nodiscard]] std::string_view WithoutResetName(WithoutReset choice);

}  // namespace vfiod::service
