// vfiod on the model kernel for the host benchmarks: a temp folder with a
// fake sysfs tree holding one edu device (group 3, on vfio-pci) and a config.
#pragma once

#include <string>

#include "common/daemon_process.h"
#include "proto/result.h"

namespace vfiod::bench {

inline constexpr const char* kModelEdu = "0000:00:03.0";

/// Starts `binary` on the model kernel in a new folder under /tmp with
/// `worker_threads` workers and logging at "warn". Errors: as DaemonProcess::Start.
[[nodiscard]] Result<DaemonProcess> StartModelDaemon(const std::string& binary, int worker_threads);

}  // namespace vfiod::bench
