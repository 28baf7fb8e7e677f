// The guest tests' rig: the real kernel, the devices named by vm_run.sh's
// environment, and helpers that prove DMA byte for byte through edu.
#pragma once

#include <gtest/gtest.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <random>
#include <span>
#include <string>

#include "kernel/kernel.h"
#include "support/edu.h"
#include "vfio/container.h"
#include "vfio/device.h"
#include "vfio/group.h"
#include "vfio/pci_sysfs.h"

namespace vfiod::testing {

/// The value of environment variable `name`, or "" when unset.
[[nodiscard]] std::string Env(const char* name);

class GuestTest : public ::testing::Test {
 protected:
  void SetUp() override;

  /// The IOMMU group of `bdf`, from sysfs (fails the test when it has none).
  [[nodiscard]] int GroupOf(const std::string& bdf) const;
  /// Opens `bdf`'s group, attaches it to `container` and opens the device.
  [[nodiscard]] std::shared_ptr<vfio::Device> OpenDevice(
      const std::shared_ptr<vfio::Container>& container, const std::string& bdf) const;
  /// A new container_ with edu attached and its driver ready in edu_; false
  /// (with the failure recorded) when any step fails.
  [[nodiscard]] bool OpenEdu();

  /// Fills `buf` with bytes from the rig's seeded generator.
  void Randomize(std::span<std::byte> buf);

  std::unique_ptr<kernel::Kernel> kernel_ = kernel::MakeLinuxKernel();
  vfio::PciSysfs sysfs_{"/sys"};
  std::string edu_bdf_;
  std::string ivshmem_bdf_;
  std::string nonviable_bdf_;
  std::mt19937_64 rng_;
  // Teardown: edu_ (its BAR mmap, MSI, device, group) goes before container_.
  std::shared_ptr<vfio::Container> container_;
  std::unique_ptr<EduDevice> edu_;
};

/// Round trip through edu: `src` (at IOVA `src_iova`) -> device buffer ->
/// `dst` (at IOVA `dst_iova`); both are host views of the IOVAs. Checks `dst`
/// equals `src` and that the bytes around `dst` were not touched.
void ExpectRoundTrip(EduDevice& edu, std::span<std::byte> src, uint64_t src_iova,
                     std::span<std::byte> dst, uint64_t dst_iova, EduCompletion completion,
                     uint32_t device_offset = 0);

}  // namespace vfiod::testing
