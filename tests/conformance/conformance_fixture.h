// Fixtures of the conformance suite. Every assertion must hold on the real
// kernel (Linux 6.1 type1v2, the QEMU test VM) and on the model alike: there
// is no "if model" anywhere in the suite.
#pragma once

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>

#include <cstdint>
#include <string>

#include "conformance_target.h"
#include "kernel/kernel.h"
#include "kernel/vfio_api.h"
#include "support/anon_buffer.h"

namespace vfiod::conformance {

using kernel::KernelFd;

inline constexpr uint64_t kPage = 4096;

template <class T>
int Errno(const Result<T>& r) {
  return r ? 0 : r.error().code;
}

using Buffer = vfiod::testing::AnonBuffer;

/// Opens containers and groups on the target; nothing attached yet.
class Conformance : public ::testing::Test {
 protected:
  Conformance() : target_(Target::Get()), k_(target_.kernel()) {}

  KernelFd OpenContainer() {
    auto fd = k_.open("/dev/vfio/vfio", O_RDWR);
    EXPECT_TRUE(fd) << fd.error().message();
    return KernelFd(&k_, fd.value_or(-1));
  }
  std::string GroupPath(const std::string& bdf) {
    auto group = target_.GroupOf(bdf);
    EXPECT_TRUE(group) << group.error().message();
    return "/dev/vfio/" + std::to_string(group.value_or(-1));
  }
  KernelFd OpenGroup(const std::string& bdf) {
    auto fd = k_.open(GroupPath(bdf), O_RDWR);
    EXPECT_TRUE(fd) << fd.error().message();
    return KernelFd(&k_, fd.value_or(-1));
  }
  const std::string& device() const { return target_.options().device; }
  const std::string& nonviable() const { return target_.options().nonviable; }

  Target& target_;
  kernel::Kernel& k_;
};

/// The device's group attached to a type1v2 container.
class Attached : public Conformance {
 protected:
  void SetUp() override {
    container_ = OpenContainer();
    group_ = OpenGroup(device());
    ASSERT_TRUE(container_.valid() && group_.valid());
    auto set = kernel::SetContainer(k_, group_.get(), container_.get());
    ASSERT_TRUE(set) << set.error().message();
    auto iommu = kernel::SetIommuType1v2(k_, container_.get());
    ASSERT_TRUE(iommu) << iommu.error().message();
  }

  Result<void> Map(uint64_t vaddr, uint64_t iova, uint64_t size) {
    return kernel::MapDma(k_, container_.get(), kernel::DmaMap{vaddr, iova, size});
  }
  Result<uint64_t> Unmap(uint64_t iova, uint64_t size) {
    return kernel::UnmapDma(k_, container_.get(), iova, size);
  }
  uint32_t DmaAvail() {
    auto info = kernel::GetIommuInfo(k_, container_.get());
    EXPECT_TRUE(info && info->dma_avail) << (info ? "no DMA_AVAIL" : info.error().message());
    return info && info->dma_avail ? *info->dma_avail : 0;
  }

  KernelFd container_;
  KernelFd group_;  // declared last: closed first, which detaches it
};

/// Attached, plus the device's fd from VFIO_GROUP_GET_DEVICE_FD.
class DeviceOpen : public Attached {
 protected:
  void SetUp() override {
    Attached::SetUp();
    if (HasFatalFailure()) {
      return;
    }
    auto fd = kernel::GetDeviceFd(k_, group_.get(), device());
    ASSERT_TRUE(fd) << fd.error().message();
    dev_ = KernelFd(&k_, *fd);
  }

  KernelFd dev_;  // declared last: closed before the group, or it stays busy
};

}  // namespace vfiod::conformance
