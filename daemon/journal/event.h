// Key events of vfiod as typed records: what happened (a Kind with a fixed
// MESSAGE_ID), to whom (uid, container, mapping, device) and the line a
// human reads. One event becomes either a plain log line (stderr) or one
// structured journal entry whose fields `journalctl VFIOD_UID=1000` finds;
// never both (journal/sink.h decides which).
//
// Depends on nothing of the daemon: every layer above may report events.
#pragma once

#include <sys/types.h>

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace vfiod::journal {

/// Severity, numbered as syslog (and the journal's PRIORITY field) number it.
enum class Level : int {
  kCritical = 2,
  kError = 3,
  kWarning = 4,
  kInfo = 6,
  kDebug = 7,
};

/// Every kind of key event. Each has a MESSAGE_ID that never changes once
/// released (systemd/vfiod.catalog explains each one to an admin).
enum class Kind {
  kDaemonReady,          ///< serving; after a restart, with what it took over
  kDaemonStopped,        ///< stopped (everything released or handed over)
  kConnectionOpened,     ///< a client connected (uid, pid)
  kConnectionClosed,     ///< a client's connection closed
  kConnectionRefused,    ///< admission refused a client (connection limit)
  kContainerCreated,     ///< container.create succeeded (container, devices)
  kContainerDestroyed,   ///< a container was torn down (destroy, session end, shutdown)
  kContainerRevoked,     ///< the kernel asked for a device; its container was destroyed
  kMappingCreated,       ///< a DMA mapping was made (alloc, map_fd, map_bar)
  kMappingFreed,         ///< dma.free removed a mapping
  kPolicyRefused,        ///< a request was refused by the policy (permission denied)
  kQuotaRefused,         ///< a request was refused by a quota
  kKernelError,          ///< a request failed in a system call (ERRNO says which)
  kDeviceBound,          ///< device.bind moved a device to vfio-pci
  kDeviceUnbound,        ///< device.unbind gave a device back to its driver
  kDeviceReset,          ///< a device was reset (device.reset, or between users)
  kDeviceNotReset,       ///< a device changed hands without the reset the config asks for
  kReleaseRequested,     ///< the kernel asked vfiod to release a device
  kRestartTookOver,      ///< a new vfiod took over a previous one's objects
  kRestartReleased,      ///< an object could not be taken over and was released
  kSessionResumed,       ///< a client resumed its session after a restart
  kContainerHandedOver,  ///< a container was left to the next vfiod (fd store)
  kEventsSuppressed,     ///< a user's log lines were cut at its budget (user_budget.h)
};

inline constexpr std::size_t kKindCount = 23;

/// What is fixed per kind: its name (the VFIOD_EVENT field), its MESSAGE_ID
/// (32 lower-case hex digits) and the level it is logged at unless an event
/// says otherwise.
struct KindInfo {
  Kind kind;
  std::string_view name;
  std::string_view message_id;
  Level level;
};

/// The table of every kind, in Kind order.
[[nodiscard]] const std::array<KindInfo, kKindCount>& Kinds();

/// The entry of `kind`.
[[nodiscard]] const KindInfo& InfoOf(Kind kind);

/// Whether events of `kind` follow from what a client asks (its connection,
/// requests and their refusals), so that a user can cause them at will: such
/// an event that names its uid is logged within that user's budget
/// (user_budget.h). The daemon's own events, a device changing hands without
/// its reset, the kernel's requests and restarts are always logged.
[[nodiscard]] bool CausedByClient(Kind kind);

/// One key event. `message` is the text line as vfiod has always written it;
/// the optional fields become journal fields when set (and only then). Every
/// member has an initializer, so a designated initializer names only those
/// it sets.
struct Event {
  Kind kind = Kind::kDaemonReady;
  std::string message{};
  std::optional<Level> level{};  ///< the kind's level when unset

  std::optional<uid_t> uid{};            ///< VFIOD_UID: the client (or owner) concerned
  std::optional<pid_t> pid{};            ///< VFIOD_PID: the client's pid
  std::optional<uint64_t> connection{};  ///< VFIOD_CONNECTION
  std::optional<uint64_t> session{};     ///< VFIOD_SESSION
  std::optional<uint64_t> container{};   ///< VFIOD_CONTAINER
  std::optional<uint64_t> mapping{};     ///< VFIOD_MAPPING
  std::vector<std::string> bdfs{};       ///< VFIOD_BDF, once per device
  std::string method{};                  ///< VFIOD_METHOD: the JSON-RPC method, if any
  std::optional<int> error_number{};     ///< ERRNO: the errno number (the journal's own field)
  std::optional<uint64_t> bytes{};       ///< VFIOD_BYTES: bytes mapped, unmapped or charged
  std::optional<uint64_t> iova{};        ///< VFIOD_IOVA, written in hex (0x...)
};

/// The level `event` is logged at.
[[nodiscard]] Level LevelOf(const Event& event);

/// The journal fields of `event`, each "NAME=value", in a fixed order:
/// MESSAGE, PRIORITY, SYSLOG_IDENTIFIER=vfiod, MESSAGE_ID, VFIOD_EVENT, then
/// the set fields. This and `event.message` (the text line) are the only
/// two renderings of an event.
[[nodiscard]] std::vector<std::string> JournalFields(const Event& event);

}  // namespace vfiod::journal
