// Running the daemon on the model kernel (kernel == "model" in the config):
// the topology comes from the config's model section, the BARs of each device
// from the sysfs tree (a fake one in host tests), and a sysfs write hook plays
// the kernel's part when vfiod binds or unbinds a device in that tree: it
// moves the driver link and tells the model kernel (ModelKernel::SetDriver),
// so binding changes what VFIO lets open, as on Linux.
#pragma once

#include <filesystem>
#include <memory>

#include "kernel/model_kernel.h"
#include "service/config.h"
#include "vfio/pci_sysfs.h"

namespace vfiod::service {

/// The model's topology: one group per distinct config group number, each
/// device with the memory BARs sysfs reports for it (a 4 KiB BAR0 when the
/// device is absent from sysfs) and the driver sysfs shows for it (when the
/// device is absent: vfio-pci if the config says `bound`, else a host driver).
[[nodiscard]] kernel::ModelTopology ModelTopologyFrom(const ModelConfig& model,
                                                      const vfio::PciSysfs& sysfs);

/// The model kernel for `config` (topology and knobs).
[[nodiscard]] std::unique_ptr<kernel::ModelKernel> MakeModelKernel(const Config& config,
                                                                   const vfio::PciSysfs& sysfs);

/// A PciSysfs write hook for a fake tree under `root`: "unbind" removes the
/// device's driver link, "drivers_probe" links the device to the driver named
/// in its driver_override (creating the driver folder), "driver_override"
/// stores the value as the kernel shows it ("(null)" when cleared). With a
/// `model` (which must outlive the hook), an unbind or probe the model refuses
/// (ModelKernel::SetDriver: EBUSY) leaves the link as it was, as a failed
/// probe would; the model is told of each change. An unbind Linux would block
/// for ever (a device fd open: EWOULDBLOCK) aborts the daemon, so a test that
/// gets vfiod there fails as loudly as a hung daemon would.
[[nodiscard]] vfio::PciSysfs::WriteHook FakeSysfsKernelHook(std::filesystem::path root,
                                                            kernel::ModelKernel* model = nullptr);

/// What the daemon runs on: a kernel seam and the sysfs tree it binds in.
struct KernelAndSysfs {
  std::unique_ptr<kernel::Kernel> kernel;
  vfio::PciSysfs sysfs;
};

/// The model kernel for `config` and a sysfs on config.sysfs_root whose
/// writes drive it (FakeSysfsKernelHook). The hook points at the model: keep
/// the sysfs no longer than the kernel.
[[nodiscard]] KernelAndSysfs MakeModelKernelAndSysfs(const Config& config);

}  // namespace vfiod::service
