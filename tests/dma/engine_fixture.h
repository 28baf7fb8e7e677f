// Shared set-up for the engine's unit tests: a ModelKernel shaped like the
// test VM, a container with the edu group attached, and leak counters.
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <vector>

#include "dma/backing.h"
#include "dma/engine.h"
#include "kernel/model_kernel.h"
#include "support/open_fds.h"
#include "vfio/container.h"
#include "vfio/group.h"

// Requests are written as designated initializers that leave the other fields
// at their defaults; -Wextra would flag every one of them.
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

namespace vfiod::dma::testing {

inline constexpr int kEduGroup = 3;
inline constexpr int kIvshmemGroup = 4;

using vfiod::testing::CountOpenFds;

/// The model's entries in `container`, as the engine's Entry type.
inline std::vector<Entry> ModelEntriesOf(const kernel::ModelKernel& model,
                                         const vfio::Container& container) {
  const std::vector<kernel::ModelEntry> mappings = model.Entries(container.fd()).value();
  std::vector<Entry> out;
  for (const kernel::ModelEntry& m : mappings) {
    out.push_back({m.iova, m.size});
  }
  return out;
}

/// Everything that must come back to where it was after a failed map.
struct LeakSnapshot {
  uint64_t locked_bytes = 0;
  size_t model_mappings = 0;
  size_t allocations = 0;
  uint64_t free_iova = 0;
  size_t shadow = 0;
  std::optional<uint32_t> entries_left;
  int fds = 0;
  size_t model_fds = 0;
  bool operator==(const LeakSnapshot&) const = default;
};

class EngineTest : public ::testing::Test {
 protected:
  explicit EngineTest(kernel::ModelKnobs knobs = {}) : model_(kernel::VmLikeTopology(), knobs) {}

  void SetUp() override {
    auto container = vfio::Container::Open(model_);
    ASSERT_TRUE(container) << container.error().message();
    container_ = *container;
    auto group = vfio::Group::Open(model_, kEduGroup);
    ASSERT_TRUE(group) << group.error().message();
    group_ = *group;
    auto attached = group_->Attach(container_);
    ASSERT_TRUE(attached) << attached.error().message();
    NewSpace({});
  }

  void NewSpace(EngineConfig config) {
    space_.reset();
    auto space = DmaSpace::Create(container_, config);
    ASSERT_TRUE(space) << space.error().message();
    space_ = std::move(*space);
  }

  std::shared_ptr<const Backing> Pages(uint64_t size) {
    auto backing = CreatePagesBacking(size, /*shareable=*/false);
    EXPECT_TRUE(backing) << backing.error().message();
    return std::make_shared<const Backing>(std::move(*backing));
  }

  std::vector<Entry> ModelEntries() { return ModelEntriesOf(model_, *container_); }

  LeakSnapshot Snapshot() {
    return {.locked_bytes = model_.LockedBytes(),
            .model_mappings = ModelEntries().size(),
            .allocations = space_->allocator().allocation_count(),
            .free_iova = space_->allocator().free_bytes(),
            .shadow = space_->ShadowEntries().size(),
            .entries_left = space_->EntriesLeft(),
            .fds = CountOpenFds(),
            .model_fds = model_.OpenFdCount()};
  }

  uint64_t MapCalls() const { return model_.IoctlCount("VFIO_IOMMU_MAP_DMA"); }
  uint64_t UnmapCalls() const { return model_.IoctlCount("VFIO_IOMMU_UNMAP_DMA"); }

  // Teardown order: the space unmaps through the container, which the group
  // keeps attached; the model outlives them all.
  kernel::ModelKernel model_;
  std::shared_ptr<vfio::Container> container_;
  std::shared_ptr<vfio::Group> group_;
  std::unique_ptr<DmaSpace> space_;
};

}  // namespace vfiod::dma::testing
