// libFuzzer target: the config reader (daemon/service/config*.cc). The input is
// a config document; ParseConfig must return a config or an EINVAL error and
// never throw or crash. An accepted config must satisfy what the readers
// promise (ranges, canonical addresses), and the model kernel built from it
// (main.cc's path for kernel "model", on a sysfs tree that does not exist)
// must come up.
#include <sys/un.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "fuzz_check.h"
#include "service/config.h"
#include "service/model_setup.h"
#include "vfio/pci_sysfs.h"

namespace vfiod::fuzz {
namespace {

using service::Config;

// Deterministic names: the fuzzer must not ask NSS.
const service::NameResolver& Names() {
  static const service::NameResolver kNames{
      .user = [](const std::string& name) -> std::optional<uid_t> {
        if (name == "root") {
          return 0;
        }
        return name == "nobody" ? std::optional<uid_t>(65534) : std::nullopt;
      },
      .group = [](const std::string& name) -> std::optional<gid_t> {
        if (name == "root") {
          return 0;
        }
        return name == "vfio-users" ? std::optional<gid_t>(990) : std::nullopt;
      }};
  return kNames;
}

void CheckLimits(const service::Limits& l) {
  FUZZ_CHECK(l.max_frame_bytes >= 4096 && l.max_frame_bytes <= (256ULL << 20));
  FUZZ_CHECK(l.max_inflight_per_client >= 1 && l.max_clients >= 1 && l.worker_threads >= 1);
  FUZZ_CHECK(l.worker_threads <= 256 && l.max_batch >= 1 && l.max_regions >= 1);
  FUZZ_CHECK(l.map_chunk_bytes != 0 && l.map_chunk_bytes % 4096 == 0);
}

void CheckPolicy(const service::PolicyConfig& policy) {
  for (const service::PolicyRule& rule : policy.rules) {
    for (const service::DevicePattern& pattern : rule.devices) {
      if (pattern.kind == service::DevicePattern::Kind::kBdf) {
        FUZZ_CHECK(service::CanonicalBdf(pattern.bdf) == pattern.bdf);
      }
    }
  }
}

void CheckModel(const service::ModelConfig& model) {
  FUZZ_CHECK(!model.iova_ranges.empty() && model.dma_entry_limit >= 1);
  for (size_t i = 0; i < model.iova_ranges.size(); ++i) {
    const service::IovaRange& r = model.iova_ranges[i];
    FUZZ_CHECK(r.start <= r.last && r.start % 4096 == 0 && (r.last + 1) % 4096 == 0);
    FUZZ_CHECK(i == 0 || model.iova_ranges[i - 1].last < r.start);
  }
  for (const service::ModelDevice& device : model.devices) {
    FUZZ_CHECK(service::CanonicalBdf(device.bdf) == device.bdf);
  }
}

void CheckAccepted(const Config& config) {
  FUZZ_CHECK(config.socket.path.starts_with('/'));
  FUZZ_CHECK(config.socket.path.size() < sizeof(sockaddr_un{}.sun_path));
  FUZZ_CHECK(config.socket.mode <= 0777);
  FUZZ_CHECK(config.socket.group.empty() != config.socket.gid.has_value());
  FUZZ_CHECK(config.sysfs_root.starts_with('/'));
  CheckLimits(config.limits);
  CheckPolicy(config.policy);
  CheckModel(config.model);
  // The model kernel of this config, as main.cc builds it (devices absent from
  // this sysfs get a 4 KiB BAR0).
  vfio::PciSysfs sysfs("/nonexistent-vfiod-fuzz-sysfs");
  auto kernel = service::MakeModelKernel(config, sysfs);
  FUZZ_CHECK(kernel != nullptr);
}

}  // namespace
}  // namespace vfiod::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace vfiod;  // NOLINT(google-build-using-namespace): fuzz entry point
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  Result<service::Config> config = service::ParseConfig(text, fuzz::Names());
  if (!config) {
    FUZZ_CHECK(config.error().code == EINVAL && config.error().op == "config");
    FUZZ_CHECK(!config.error().detail.empty());
    return 0;
  }
  fuzz::CheckAccepted(*config);
  return 0;
}
