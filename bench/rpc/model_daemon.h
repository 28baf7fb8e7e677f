// vfiod on the model kernel for the host benchmarks: a temp folder with a
// fake sysfs tree holding two devices on vfio-pci (edu in group 3, a second
// one in group 4) and a config.
#pragma once

#include <string>

#include "common/daemon_process.h"
#include "proto/result.h"

namespace vfiod::bench {

inline constexpr const char* kModelEdu = "0000:00:03.0";
inline constexpr const char* kModelSecond = "0000:00:04.0";

/// Starts `binary` on the model kernel in a new folder under /tmp with
/// `worker_threads` workers and logging at "warn"; `patch` (a JSON merge
/// patch, RFC 7386) changes the config first. Errors: as DaemonProcess::Start.
[[nodiscard]] Result<DaemonProcess> StartModelDaemon(const std::string& binary, int worker_threads,
                                                     const nlohmann::json& patch = nullptr);

}  // namespace vfiod::bench
