#include "journal/event.h"

#include <cstdio>

namespace vfiod::journal {

namespace {

// Generated once with `systemd-id128 new`; never change a released one
// (systemd/vfiod.catalog holds the same ids, a test checks both agree).
constexpr std::array<KindInfo, kKindCount> kKinds{{
    {Kind::kDaemonReady, "daemon_ready", "d34be4fa4cc7464c957b77a7cd372758", Level::kInfo},
    {Kind::kDaemonStopped, "daemon_stopped", "58df510d4db049bab2efc6f2d27c049d", Level::kInfo},
    {Kind::kConnectionOpened, "connection_opened", "ecc10f2f19c643d6bb69aa90bacd7368",
     Level::kInfo},
    {Kind::kConnectionClosed, "connection_closed", "7176c7aea38248b486ff46bdcb443563",
     Level::kInfo},
    {Kind::kConnectionRefused, "connection_refused", "5e6a81a9ad594d9889b2aabf98665c09",
     Level::kWarning},
    {Kind::kContainerCreated, "container_created", "e632dff8e23a4bf38af32cbc7ec61b86",
     Level::kInfo},
    {Kind::kContainerDestroyed, "container_destroyed", "5f45ea9e29df42d8bdf2f16461c98fda",
     Level::kInfo},
    {Kind::kContainerRevoked, "container_revoked", "7af2ae3bf8794166b4cec7bc8e85e706",
     Level::kWarning},
    {Kind::kMappingCreated, "mapping_created", "478d748adf2c400f86230eaf5a65ee7b", Level::kInfo},
    {Kind::kMappingFreed, "mapping_freed", "34bc9e62edba4a1e942f69ea0c9486ee", Level::kInfo},
    {Kind::kPolicyRefused, "policy_refused", "e190990dce4c4871888bfa1144de7e5f", Level::kWarning},
    {Kind::kQuotaRefused, "quota_refused", "5dab0e95a2c5494fb8e3b61ae2154141", Level::kWarning},
    {Kind::kKernelError, "kernel_error", "70a02f3ba9de4a1cbfeb55984eef3ddb", Level::kWarning},
    {Kind::kDeviceBound, "device_bound", "d123017b803842df85ac3be9d345fdf5", Level::kInfo},
    {Kind::kDeviceUnbound, "device_unbound", "39978a03e8934584b79ae8fd28e7d9b4", Level::kInfo},
    {Kind::kDeviceReset, "device_reset", "985c157d913c46859dedb1e5dbd9b4da", Level::kInfo},
    {Kind::kDeviceNotReset, "device_not_reset", "5125f10268b1452aa2c1e5fb37efe401",
     Level::kWarning},
    {Kind::kReleaseRequested, "release_requested", "a82ebd431a1442cbbb527e659977b83d",
     Level::kWarning},
    {Kind::kRestartTookOver, "restart_took_over", "fc87b6aa363e4820987fc36fd144343c", Level::kInfo},
    {Kind::kRestartReleased, "restart_released", "2e338bcca64e47daabdb3bb4ec8fc092",
     Level::kWarning},
    {Kind::kSessionResumed, "session_resumed", "ae8ae50f2f55448e8199f1c4a93c3ef7", Level::kInfo},
    {Kind::kContainerHandedOver, "container_handed_over", "ba0bef26f6f24567818b22a6f6fdf4a3",
     Level::kInfo},
    {Kind::kEventsSuppressed, "events_suppressed", "e2d772fac8394d4fbbbd5ad8d7a65df1",
     Level::kWarning},
}};

constexpr bool InKindOrder() {
  for (std::size_t i = 0; i < kKinds.size(); ++i) {
    if (static_cast<std::size_t>(kKinds[i].kind) != i) {
      return false;
    }
  }
  return true;
}
static_assert(InKindOrder(), "kKinds must list every Kind in enum order");
static_assert(static_cast<std::size_t>(Kind::kEventsSuppressed) + 1 == kKindCount);

std::string Hex(uint64_t value) {
  char buf[2 + 16 + 1];
  (void)std::snprintf(buf, sizeof buf, "0x%llx", static_cast<unsigned long long>(value));
  return buf;
}

}  // namespace

const std::array<KindInfo, kKindCount>& Kinds() { return kKinds; }

bool CausedByClient(Kind kind) {
  switch (kind) {
    case Kind::kConnectionOpened:
    case Kind::kConnectionClosed:
    case Kind::kConnectionRefused:
    case Kind::kContainerCreated:
    case Kind::kContainerDestroyed:
    case Kind::kMappingCreated:
    case Kind::kMappingFreed:
    case Kind::kPolicyRefused:
    case Kind::kQuotaRefused:
    case Kind::kKernelError:
    case Kind::kDeviceBound:
    case Kind::kDeviceUnbound:
    case Kind::kDeviceReset:
    case Kind::kSessionResumed:
      return true;
    case Kind::kDaemonReady:
    case Kind::kDaemonStopped:
    case Kind::kContainerRevoked:
    case Kind::kDeviceNotReset:
    case Kind::kReleaseRequested:
    case Kind::kRestartTookOver:
    case Kind::kRestartReleased:
    case Kind::kContainerHandedOver:
    case Kind::kEventsSuppressed:
      return false;
  }
  return false;
}

const KindInfo& InfoOf(Kind kind) { return kKinds[static_cast<std::size_t>(kind)]; }

Level LevelOf(const Event& event) { return event.level.value_or(InfoOf(event.kind).level); }

std::vector<std::string> JournalFields(const Event& event) {
  const KindInfo& info = InfoOf(event.kind);
  std::vector<std::string> out;
  out.reserve(8 + event.bdfs.size());
  out.push_back("MESSAGE=" + event.message);
  out.push_back("PRIORITY=" + std::to_string(static_cast<int>(LevelOf(event))));
  out.emplace_back("SYSLOG_IDENTIFIER=vfiod");
  out.push_back("MESSAGE_ID=" + std::string(info.message_id));
  out.push_back("VFIOD_EVENT=" + std::string(info.name));
  auto number = [&out](const char* name, const auto& value) {
    if (value) {
      out.push_back(std::string(name) + "=" + std::to_string(*value));
    }
  };
  number("VFIOD_UID", event.uid);
  number("VFIOD_PID", event.pid);
  number("VFIOD_CONNECTION", event.connection);
  number("VFIOD_SESSION", event.session);
  number("VFIOD_CONTAINER", event.container);
  number("VFIOD_MAPPING", event.mapping);
  for (const std::string& bdf : event.bdfs) {
    out.push_back("VFIOD_BDF=" + bdf);
  }
  if (!event.method.empty()) {
    out.push_back("VFIOD_METHOD=" + event.method);
  }
  number("ERRNO", event.error_number);
  number("VFIOD_BYTES", event.bytes);
  if (event.iova) {
    out.push_back("VFIOD_IOVA=" + Hex(*event.iova));
  }
  return out;
}

}  // namespace vfiod::journal
