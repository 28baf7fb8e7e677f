// What the conformance suite runs against: the model (default, a topology
// mirroring the QEMU test VM) or the real kernel, plus the two devices it
// needs: a vfio-pci device alone in a viable group, and a device whose group
// is not viable. Groups are found from sysfs (real kernel) or the topology.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "kernel/kernel.h"
#include "proto/result.h"

namespace vfiod::kernel {
class ModelKernel;
}

namespace vfiod::conformance {

struct Options {
  std::string kernel = "model";  ///< "model" or "linux"
  std::string device;            ///< default: $VFIOD_EDU_BDF, else the model's edu
  std::string nonviable;         ///< default: $VFIOD_NONVIABLE_BDF, else the model's 00:1f.3
};

/// Parses --kernel=, --device=, --nonviable= (gtest flags already removed).
/// Fills defaults from the environment. Returns an error message or "".
std::string ParseOptions(int argc, char** argv, Options* out);

class Target {
 public:
  /// Sets the options the first Get() will use.
  static void Configure(Options options);
  /// The process-wide target, built on first use.
  static Target& Get();

  [[nodiscard]] kernel::Kernel& kernel() const { return *kernel_; }
  [[nodiscard]] const Options& options() const { return options_; }
  /// The IOMMU group number of a device (sysfs iommu_group, or the model).
  [[nodiscard]] Result<int> GroupOf(const std::string& bdf) const;
  /// Every device of IOMMU group `group` (sysfs iommu_groups/N/devices, or
  /// the model's topology), sorted.
  [[nodiscard]] std::vector<std::string> GroupMembers(int group) const;
  /// The kernel release whose type1 rules the target follows, as
  /// {major, minor}: uname's on the real kernel; {6, 1} on the model, which
  /// models Debian 12's 6.1. Rules that changed between the kernels of the
  /// test bed name the release they hold from (see conformance/README.md).
  [[nodiscard]] std::pair<int, int> Release() const;
  /// The driver `bdf` is bound to; "" when none (or no such device).
  [[nodiscard]] std::string DriverOf(const std::string& bdf) const;

  // Driver binding: sysfs writes on the real kernel (as root), as vfiod does
  // them; ModelKernel::SetDriver on the model.
  /// Unbinds `bdf` from its driver; nothing to do when it has none. Must not
  /// be called while a device fd of it is open (Linux would block).
  Result<void> Unbind(const std::string& bdf);
  /// Lets `driver` probe the unbound `bdf` (driver_override, then
  /// drivers_probe). Returns the driver the device is bound to afterwards:
  /// "" when the probe failed (the kernel does not fail the write for that).
  Result<std::string> Probe(const std::string& bdf, const std::string& driver);

 private:
  explicit Target(Options options);
  [[nodiscard]] kernel::ModelKernel* model() const;

  Options options_;
  std::unique_ptr<kernel::Kernel> kernel_;
};

}  // namespace vfiod::conformance
