// What the conformance suite runs against: the model (default, a topology
// mirroring the QEMU test VM) or the real kernel, plus the two devices it
// needs: a vfio-pci device alone in a viable group, and a device whose group
// is not viable. Groups are found from sysfs (real kernel) or the topology.
#pragma once

#include <memory>
#include <string>

#include "kernel/kernel.h"
#include "proto/result.h"

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

 private:
  explicit Target(Options options);

  Options options_;
  std::unique_ptr<kernel::Kernel> kernel_;
};

}  // namespace vfiod::conformance
