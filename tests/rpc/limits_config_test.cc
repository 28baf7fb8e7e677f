// Every key of the config file's "limits" section is documented, parsed and
// used: the test enumerates the keys the parser accepts (LimitKeys) and, for
// each, parses a config with a non-default value and checks that the value
// reaches the component that enforces it: the rpc server's ServerConfig as
// main.cc builds it (ServerConfigFromLimits), or the service, by its
// behaviour on the model kernel. A key added to the parser without a probe
// here, or one whose value goes nowhere, fails it.
#include <gtest/gtest.h>
#include <linux/memfd.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <fstream>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <string>

#include "model_service.h"
#include "rpc/server_limits.h"
#include "service/config.h"
#include "support/config_docs.h"

namespace vfiod::rpc {
namespace {

using nlohmann::json;
using service::Config;

std::string ReadSourceFile(const std::string& relative) {
  std::ifstream in(std::string(VFIOD_SOURCE_DIR) + "/" + relative);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

service::NameResolver AnyName() {
  return {[](const std::string&) -> std::optional<uid_t> { return 1000; },
          [](const std::string&) -> std::optional<gid_t> { return 990; }};
}

Config ParseLimits(const json& limits) {
  auto config = service::ParseConfig(json{{"limits", limits}}.dump(), AnyName());
  EXPECT_TRUE(config.has_value()) << limits << ": " << config.error().message();
  return config ? *config : Config{};
}

/// The service on the model kernel, built from `config`.
class ServiceProbe : public service::model_service::ModelServiceTest {
 public:
  explicit ServiceProbe(const Config& config) { Start(config); }
  void TestBody() override {}
  service::Caller Root() {
    service::Identity id{0, 0, {}};
    return service::Caller{service_->OpenSession(id), id};
  }
  /// VFIO_IOMMU_MAP_DMA calls for one 16 KiB allocation.
  uint64_t MapCallsFor16K() {
    service::Caller root = Root();
    auto c = service_->CreateContainer(root, {service::model_service::kEdu}, "");
    EXPECT_TRUE(c.has_value());
    uint64_t before = faulty_->IoctlCalls("VFIO_IOMMU_MAP_DMA");
    service::AllocRequest r;
    r.container = c ? c->id : 0;
    r.size = 16 << 10;
    auto mapped = service_->Alloc(root, r, {});
    EXPECT_TRUE(mapped.has_value()) << mapped.error().error.message();
    return faulty_->IoctlCalls("VFIO_IOMMU_MAP_DMA") - before;
  }
  /// Whether root may allocate 16 KiB (the daemon-wide locked cap binds root too).
  bool RootMay16K() {
    service::Caller root = Root();
    auto c = service_->CreateContainer(root, {service::model_service::kEdu}, "");
    EXPECT_TRUE(c.has_value());
    service::AllocRequest r;
    r.container = c ? c->id : 0;
    r.size = 16 << 10;
    return service_->Alloc(root, r, {}).has_value();
  }
  /// Regions one session registers before the service refuses one (at most 300).
  int RegionsAccepted() {
    service::Caller root = Root();
    for (int n = 0; n < 300; ++n) {
      UniqueFd fd(
          static_cast<int>(::syscall(SYS_memfd_create, "probe", MFD_CLOEXEC | MFD_ALLOW_SEALING)));
      EXPECT_EQ(::ftruncate(fd.get(), 4096), 0);
      if (!service_->RegisterRegion(root, service::RegisterRequest{std::move(fd), 0, 0})) {
        return n;
      }
    }
    return 300;
  }
  /// Whether root may create a container over edu (4 fds of the store's
  /// budget) while an fd store is in use.
  bool RootMayKeepAContainer() { return MayKeepAContainer(Root()); }
  /// The same for kUser, whom the policy grants edu.
  bool UserMayKeepAContainer() { return MayKeepAContainer(Open(kUser)); }

  static constexpr uid_t kUser = 1000;

 private:
  bool MayKeepAContainer(const service::Caller& who) {
    service::Service::FdStoreHooks hooks;
    hooks.store = [](const std::string&, int) {};
    hooks.remove = [](const std::string&) {};
    service_->SetFdStoreHooks(std::move(hooks));
    return service_->CreateContainer(who, {service::model_service::kEdu}, "").has_value();
  }
};

/// How one key is checked: a non-default value, and what must follow from it.
struct Probe {
  json value;
  /// Given the ServerConfig of the default and of the changed file, and the
  /// two configs: "" when the value reached its user, else what went wrong.
  std::function<std::string(const ServerConfig& dflt, const ServerConfig& changed,
                            const Config& dflt_config, const Config& changed_config)>
      reaches;
};

template <class Field, class Want>
Probe ServerProbe(json value, Field ServerConfig::*field, Want want) {
  return {std::move(value),
          [field, want](const ServerConfig& d, const ServerConfig& c, const Config&,
                        const Config&) -> std::string {
            if (c.*field != Field(want) || d.*field == c.*field) {
              return "the server's field did not take the value";
            }
            ServerConfig only = d;
            only.*field = c.*field;
            return only == c ? "" : "other server fields changed too";
          }};
}

std::map<std::string, Probe> Probes() {
  using std::chrono::seconds;
  std::map<std::string, Probe> p;
  p["max_frame_bytes"] = ServerProbe("64K", &ServerConfig::max_frame_bytes, 64u << 10);
  p["max_inflight_per_client"] = ServerProbe(3, &ServerConfig::max_inflight_per_connection, 3u);
  p["max_clients"] = ServerProbe(9, &ServerConfig::max_connections, 9u);
  p["worker_threads"] = ServerProbe(7, &ServerConfig::worker_threads, 7u);
  p["max_batch"] = ServerProbe(5, &ServerConfig::max_batch, 5u);
  p["max_output_bytes"] = ServerProbe("128K", &ServerConfig::max_output_bytes, 128u << 10);
  p["max_batch_reply_bytes"] = ServerProbe("8K", &ServerConfig::max_batch_reply_bytes, 8u << 10);
  p["max_clients_per_user"] = ServerProbe(2, &ServerConfig::max_connections_per_user, 2u);
  p["idle_timeout"] = ServerProbe(7, &ServerConfig::idle_timeout, seconds(7));
  p["line_timeout"] = ServerProbe(0, &ServerConfig::line_timeout, seconds(0));
  p["write_timeout"] = ServerProbe(5, &ServerConfig::write_timeout, seconds(5));
  // Read by the service from its Config: checked by what the service does.
  p["map_chunk_bytes"] = {"4K",
                          [](const ServerConfig&, const ServerConfig&, const Config& d,
                             const Config& c) -> std::string {
                            uint64_t whole = ServiceProbe(d).MapCallsFor16K();
                            uint64_t chunked = ServiceProbe(c).MapCallsFor16K();
                            return whole == 1 && chunked == 4
                                       ? ""
                                       : "16K mapped in " + std::to_string(whole) + " and " +
                                             std::to_string(chunked) + " calls, not 1 and 4";
                          }};
  p["max_regions"] = {3,
                      [](const ServerConfig&, const ServerConfig&, const Config& d,
                         const Config& c) -> std::string {
                        int dflt = ServiceProbe(d).RegionsAccepted();
                        int changed = ServiceProbe(c).RegionsAccepted();
                        return dflt == 256 && changed == 3
                                   ? ""
                                   : "regions accepted: " + std::to_string(dflt) + " and " +
                                         std::to_string(changed) + ", not 256 and 3";
                      }};
  p["max_locked_bytes"] = {"8K",
                           [](const ServerConfig&, const ServerConfig&, const Config& d,
                              const Config& c) -> std::string {
                             bool dflt = ServiceProbe(d).RootMay16K();
                             bool changed = ServiceProbe(c).RootMay16K();
                             return dflt && !changed ? ""
                                                     : "a 16K allocation under an 8K cap was not "
                                                       "refused (or the default refused it)";
                           }};
  p["max_stored_fds"] = {3,
                         [](const ServerConfig&, const ServerConfig&, const Config& d,
                            const Config& c) -> std::string {
                           bool dflt = ServiceProbe(d).RootMayKeepAContainer();
                           bool changed = ServiceProbe(c).RootMayKeepAContainer();
                           return dflt && !changed ? ""
                                                   : "a container (4 stored fds) under a budget "
                                                     "of 3 was not refused (or the default "
                                                     "refused it)";
                         }};
  p["max_stored_fds_per_user"] = {
      3,
      [](const ServerConfig&, const ServerConfig&, const Config& d,
         const Config& c) -> std::string {
        auto user_may = [](const Config& limits) {
          Config config = service::model_service::EduConfig(
              ServiceProbe::kUser,
              service::Quota{.locked_bytes = 1 << 20, .mappings = 4, .containers = 4});
          config.limits = limits.limits;
          return ServiceProbe(config).UserMayKeepAContainer();
        };
        return user_may(d) && !user_may(c) ? ""
                                           : "a user's container (4 stored fds) under a share "
                                             "of 3 was not refused (or the default refused it)";
      }};
  return p;
}

TEST(LimitsConfig, EveryParsedLimitKeyReachesTheComponentThatUsesIt) {
  const std::map<std::string, Probe> probes = Probes();
  const Config dflt = ParseLimits(json::object());
  const ServerConfig dflt_server = ServerConfigFromLimits(dflt.limits);
  for (std::string_view key_view : service::LimitKeys()) {
    std::string key(key_view);
    auto probe = probes.find(key);
    ASSERT_NE(probe, probes.end())
        << "limits." << key << " is parsed but nothing checks that it is used: add a probe";
    Config changed = ParseLimits(json{{key, probe->second.value}});
    EXPECT_FALSE(changed.limits == dflt.limits) << "limits." << key << " parsed to its default";
    std::string failure =
        probe->second.reaches(dflt_server, ServerConfigFromLimits(changed.limits), dflt, changed);
    EXPECT_EQ(failure, "") << "limits." << key;
  }
  EXPECT_EQ(probes.size(), service::LimitKeys().size()) << "a probe for a key the parser refuses";
}

std::set<std::string> LimitKeySet() {
  std::set<std::string> keys;
  for (std::string_view k : service::LimitKeys()) {
    keys.emplace(k);
  }
  return keys;
}

TEST(LimitsConfig, TheDocumentedAndShippedKeysAreTheParsedOnes) {
  // config/README.md: the rows of the table under "## `limits`".
  const auto documented = vfiod::testing::DocumentedConfigKeys(VFIOD_SOURCE_DIR, "limits");
  ASSERT_TRUE(documented.has_value());
  EXPECT_EQ(*documented, LimitKeySet());
  // config/vfiod.json spells out every limit.
  json shipped = json::parse(ReadSourceFile("config/vfiod.json"));
  std::set<std::string> in_file;
  for (const auto& [key, value] : shipped["limits"].items()) {
    in_file.insert(key);
  }
  EXPECT_EQ(in_file, LimitKeySet());
}

}  // namespace
}  // namespace vfiod::rpc
