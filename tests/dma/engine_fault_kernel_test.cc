// The engine under the FaultInjectingKernel: injected MAP_DMA failures at
// every chunk, and the harder cases the model never produces by itself:
// an UNMAP_DMA that fails during a rollback, an Unmap or UnmapAll that fails.
// The shadow map must equal the model's mappings after every step.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "engine_fixture.h"
#include "kernel/fault_kernel.h"

namespace vfiod::dma::testing {
namespace {

using kernel::Fault;
using ::testing::HasSubstr;

constexpr uint64_t kChunk = 2 * kPage4K;
constexpr uint64_t kChunks = 4;

class EngineFaultKernelTest : public ::testing::Test {
 protected:
  void SetUp() override {
    container_ = vfio::Container::Open(faulty_).value();
    group_ = vfio::Group::Open(faulty_, kEduGroup).value();
    ASSERT_TRUE(group_->Attach(container_));
    space_ = DmaSpace::Create(container_, {.chunk_bytes = kChunk}).value();
    backing_ = std::make_shared<const Backing>(CreatePagesBacking(kChunks * kChunk, false).value());
  }

  std::vector<Entry> ModelEntries() { return ModelEntriesOf(model_, *container_); }

  void ExpectClean() {
    EXPECT_TRUE(ModelEntries().empty());
    EXPECT_TRUE(space_->ShadowEntries().empty());
    EXPECT_TRUE(space_->Mappings().empty());
    EXPECT_EQ(space_->allocator().allocation_count(), 0u);
    EXPECT_EQ(space_->EntriesLeft(), kernel::ModelKnobs{}.dma_entry_limit);
    EXPECT_EQ(model_.LockedBytes(), 0u);
  }

  // Teardown order: space_ unmaps through the container; the wrappers and the
  // model outlive every object that calls them.
  kernel::ModelKernel model_{kernel::VmLikeTopology()};
  kernel::FaultInjectingKernel faulty_{model_};
  std::shared_ptr<vfio::Container> container_;
  std::shared_ptr<vfio::Group> group_;
  std::unique_ptr<DmaSpace> space_;
  std::shared_ptr<const Backing> backing_;
};

TEST_F(EngineFaultKernelTest, InjectedMapFailureAtEveryChunkLeavesNothing) {
  const int fds = CountOpenFds();
  for (uint64_t k = 1; k <= kChunks; ++k) {
    SCOPED_TRACE("failing chunk " + std::to_string(k));
    faulty_.Arm(Fault::Ioctl("VFIO_IOMMU_MAP_DMA", k, EFAULT));
    auto report = space_->Map({.backing = backing_});
    faulty_.Clear();
    ASSERT_FALSE(report);
    EXPECT_EQ(report.error().code, EFAULT);
    EXPECT_THAT(report.error().detail, HasSubstr("chunk " + std::to_string(k) + " of 4"));
    ExpectClean();
    EXPECT_EQ(CountOpenFds(), fds);
  }
}

TEST_F(EngineFaultKernelTest, AScatterListFailingInItsMiddleSegmentLeavesNothing) {
  const int fds = CountOpenFds();
  // Three segments that cannot merge: one MAP_DMA each, the second fails.
  faulty_.Arm(Fault::Ioctl("VFIO_IOMMU_MAP_DMA", 2, EFAULT));
  auto report =
      space_->Map({.backing = backing_,
                   .segments = {{.offset = 0, .size = kPage4K, .iova = 0x100000},
                                {.offset = 4 * kPage4K, .size = kPage4K, .iova = 0x200000},
                                {.offset = 2 * kPage4K, .size = kPage4K, .iova = 0x300000}}});
  faulty_.Clear();
  ASSERT_FALSE(report);
  EXPECT_EQ(report.error().code, EFAULT);
  EXPECT_THAT(report.error().detail, HasSubstr("chunk 2 of 3"));
  ExpectClean();
  EXPECT_EQ(CountOpenFds(), fds);
  // Back to back in one range, the same: the range is released too.
  faulty_.Arm(Fault::Ioctl("VFIO_IOMMU_MAP_DMA", 2, ENOMEM));
  report = space_->Map({.backing = backing_,
                        .segments = {{.offset = 0, .size = kPage4K},
                                     {.offset = 4 * kPage4K, .size = kPage4K},
                                     {.offset = 2 * kPage4K, .size = kPage4K}}});
  faulty_.Clear();
  ASSERT_FALSE(report);
  EXPECT_EQ(report.error().code, ENOMEM);
  ExpectClean();
}

TEST_F(EngineFaultKernelTest, FailedRollbackKeepsWhatIsStillMappedForUnmapAll) {
  faulty_.Arm(Fault::Ioctl("VFIO_IOMMU_MAP_DMA", 3, ENOMEM));
  faulty_.Arm(Fault::Ioctl("VFIO_IOMMU_UNMAP_DMA", 1, EIO));
  auto report = space_->Map({.backing = backing_});
  faulty_.Clear();
  ASSERT_FALSE(report);
  EXPECT_EQ(report.error().code, ENOMEM);  // the cause, not the rollback's failure
  EXPECT_THAT(report.error().detail, HasSubstr("rollback"));
  // Chunks 1 and 2 are still in the kernel, and the shadow says so.
  EXPECT_EQ(ModelEntries().size(), 2u);
  EXPECT_EQ(space_->ShadowEntries(), ModelEntries());
  ASSERT_EQ(space_->Mappings().size(), 1u);
  EXPECT_EQ(space_->Mappings().front().chunks, 2u);
  EXPECT_EQ(space_->running_jobs(), 0u);
  auto all = space_->UnmapAll();
  ASSERT_TRUE(all) << all.error().message();
  EXPECT_EQ(all->bytes, 2 * kChunk);
  ExpectClean();
}

TEST_F(EngineFaultKernelTest, FailedUnmapKeepsTheMappingAndCanBeRetried) {
  auto report = space_->Map({.backing = backing_});
  ASSERT_TRUE(report) << report.error().message();
  faulty_.Arm(Fault::Ioctl("VFIO_IOMMU_UNMAP_DMA", 1, EIO));
  auto failed = space_->Unmap(report->id);
  faulty_.Clear();
  ASSERT_FALSE(failed);
  EXPECT_EQ(failed.error().code, EIO);
  EXPECT_EQ(space_->Mappings().size(), 1u);
  EXPECT_EQ(space_->ShadowEntries(), ModelEntries());
  EXPECT_EQ(ModelEntries().size(), kChunks);
  auto retried = space_->Unmap(report->id);
  ASSERT_TRUE(retried) << retried.error().message();
  ExpectClean();
}

TEST_F(EngineFaultKernelTest, FailedUnmapAllKeepsEverythingAndCanBeRetried) {
  ASSERT_TRUE(space_->Map({.backing = backing_}));
  faulty_.Arm(Fault::Ioctl("VFIO_IOMMU_UNMAP_DMA", 1, EIO));
  auto failed = space_->UnmapAll();
  faulty_.Clear();
  ASSERT_FALSE(failed);
  EXPECT_EQ(space_->Mappings().size(), 1u);
  EXPECT_EQ(space_->ShadowEntries(), ModelEntries());
  ASSERT_TRUE(space_->UnmapAll());
  ExpectClean();
}

}  // namespace
}  // namespace vfiod::dma::testing
