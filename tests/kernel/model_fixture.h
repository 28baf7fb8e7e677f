// Shared helpers for the kernel tests: a VM-like model with the edu group
// attached to a type1v2 container, and populated anonymous buffers.
#pragma once

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>

#include <cstdint>

#include "kernel/kernel.h"
#include "kernel/model_kernel.h"
#include "kernel/vfio_api.h"
#include "support/anon_buffer.h"

namespace vfiod::kernel::testing {

inline constexpr uint64_t kPage = 4096;
inline constexpr int kEduGroup = 3;
inline constexpr int kIvshmemGroup = 4;
inline constexpr int kIch9Group = 7;
inline constexpr const char* kEdu = "0000:00:03.0";

using Buffer = vfiod::testing::AnonBuffer;

inline std::string GroupPath(int group) { return "/dev/vfio/" + std::to_string(group); }

/// A model with the edu group in a container whose IOMMU is set.
class ModelFixture : public ::testing::Test {
 protected:
  explicit ModelFixture(ModelKnobs knobs = {}) : k_(VmLikeTopology(), std::move(knobs)) {}

  void SetUp() override {
    container_ = Open("/dev/vfio/vfio");
    group_ = Open(GroupPath(kEduGroup));
    ASSERT_TRUE(SetContainer(k_, group_.get(), container_.get()));
    ASSERT_TRUE(SetIommuType1v2(k_, container_.get()));
  }

  KernelFd Open(const std::string& path) {
    auto fd = k_.open(path, O_RDWR);
    EXPECT_TRUE(fd) << fd.error().message();
    return KernelFd(&k_, fd.value_or(-1));
  }

  KernelFd OpenEdu() {
    auto fd = GetDeviceFd(k_, group_.get(), kEdu);
    EXPECT_TRUE(fd) << fd.error().message();
    return KernelFd(&k_, fd.value_or(-1));
  }

  Result<void> Map(uint64_t vaddr, uint64_t iova, uint64_t size) {
    return MapDma(k_, container_.get(), DmaMap{vaddr, iova, size});
  }

  size_t MappingCount() { return k_.Entries(container_.get()).value().size(); }

  ModelKernel k_;
  // Declared after k_: closed before the model goes away.
  KernelFd container_;
  KernelFd group_;
};

/// The errno of a failed Result, or 0 on success.
template <class T>
int Errno(const Result<T>& r) {
  return r ? 0 : r.error().code;
}

}  // namespace vfiod::kernel::testing
