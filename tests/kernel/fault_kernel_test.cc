#include "kernel/fault_kernel.h"

#include <gtest/gtest.h>

#include "model_fixture.h"

namespace vfiod::kernel::testing {
namespace {

class FaultTest : public ::testing::Test {
 protected:
  void SetUp() override {
    container_ = KernelFd(&faulty_, faulty_.open("/dev/vfio/vfio", O_RDWR).value());
    group_ = KernelFd(&faulty_, faulty_.open(GroupPath(kEduGroup), O_RDWR).value());
    ASSERT_TRUE(SetContainer(faulty_, group_.get(), container_.get()));
    ASSERT_TRUE(SetIommuType1v2(faulty_, container_.get()));
  }
  Result<void> Map(uint64_t vaddr, uint64_t iova) {
    return MapDma(faulty_, container_.get(), DmaMap{vaddr, iova, kPage});
  }

  ModelKernel model_{VmLikeTopology()};
  FaultInjectingKernel faulty_{model_};
  KernelFd container_;  // after the kernels: closed first
  KernelFd group_;
};

TEST_F(FaultTest, FailsTheNthMatchingIoctlOnlyAndDoesNotForwardIt) {
  Buffer buf(kPage);
  faulty_.Arm(Fault::Ioctl("VFIO_IOMMU_MAP_DMA", 3, ENOMEM));
  EXPECT_TRUE(Map(buf.vaddr(), 0x1000));
  EXPECT_TRUE(GetIommuInfo(faulty_, container_.get()));  // other ioctls do not count
  EXPECT_TRUE(Map(buf.vaddr(), 0x2000));
  auto third = Map(buf.vaddr(), 0x3000);
  ASSERT_FALSE(third);
  EXPECT_EQ(third.error().code, ENOMEM);
  EXPECT_EQ(third.error().op, "VFIO_IOMMU_MAP_DMA");
  EXPECT_TRUE(Map(buf.vaddr(), 0x4000));
  EXPECT_EQ(model_.Entries(container_.get())->size(), 3u);  // the failed one never arrived
  EXPECT_EQ(model_.IoctlCount("VFIO_IOMMU_MAP_DMA"), 3u);
  EXPECT_EQ(faulty_.IoctlCalls("VFIO_IOMMU_MAP_DMA"), 4u);
  EXPECT_EQ(faulty_.Injected(), 1u);
  EXPECT_EQ(faulty_.name(), "faulty(model)");
}

TEST_F(FaultTest, TimesAndOperationFiltersAndClear) {
  Buffer buf(kPage);
  Fault f = Fault::OnOp(KernelOp::kIoctl, 1, EIO);
  f.times = 2;
  faulty_.Arm(f);
  EXPECT_EQ(Errno(Map(buf.vaddr(), 0x1000)), EIO);
  EXPECT_EQ(Errno(GetIommuInfo(faulty_, container_.get())), EIO);
  EXPECT_TRUE(Map(buf.vaddr(), 0x1000));
  faulty_.Arm(Fault::OnOp(KernelOp::kOpen, 1, EACCES));
  EXPECT_EQ(Errno(faulty_.open("/dev/vfio/vfio", O_RDWR)), EACCES);
  faulty_.Arm(Fault::OnOp(KernelOp::kMmap, 1, ENOMEM));
  EXPECT_EQ(Errno(faulty_.mmap(nullptr, kPage, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)),
            ENOMEM);
  faulty_.Clear();
  auto fd = faulty_.open("/dev/vfio/vfio", O_RDWR);
  ASSERT_TRUE(fd);
  faulty_.close(*fd);
  EXPECT_EQ(faulty_.Calls(KernelOp::kClose), 1u);
  EXPECT_EQ(faulty_.Calls(KernelOp::kOpen), 4u);  // two in SetUp, two here
}

}  // namespace
}  // namespace vfiod::kernel::testing
