// MapDelayKernel: what each MAP_DMA is given to sleep (never timed here), and
// that every call still reaches the model unchanged.
#include "kernel/map_delay_kernel.h"

#include <gtest/gtest.h>

#include "model_fixture.h"

namespace vfiod::kernel::testing {
namespace {

using std::chrono::microseconds;
using std::chrono::nanoseconds;

constexpr uint64_t kMiB = 1 << 20;

MapDelayKernel Wrap(microseconds per_mib) {
  return MapDelayKernel(std::make_unique<ModelKernel>(VmLikeTopology()), per_mib);
}

TEST(MapDelayKernel, DelayIsProportionalToTheSizeMapped) {
  MapDelayKernel k = Wrap(microseconds(1000));
  EXPECT_EQ(k.DelayFor(kMiB), microseconds(1000));
  EXPECT_EQ(k.DelayFor(64 * kMiB), microseconds(64'000));
  EXPECT_EQ(k.DelayFor(kMiB / 2), microseconds(500));
  EXPECT_EQ(k.DelayFor(kPage), microseconds(3));  // 4 KiB of a MiB's 1000 us, rounded down
  EXPECT_EQ(k.DelayFor(0), nanoseconds(0));
}

TEST(MapDelayKernel, TheRateIsClampedAndHugeSizesDoNotOverflow) {
  EXPECT_EQ(Wrap(microseconds(0)).DelayFor(kMiB), nanoseconds(0));
  MapDelayKernel fastest_allowed = Wrap(MapDelayKernel::kMaxPerMib * 10);
  EXPECT_EQ(fastest_allowed.DelayFor(kMiB), MapDelayKernel::kMaxPerMib);
  nanoseconds huge = fastest_allowed.DelayFor(UINT64_MAX);
  EXPECT_GT(huge, nanoseconds(0));
  EXPECT_EQ(huge, fastest_allowed.DelayFor(uint64_t{1} << 50));  // clamped to 2^40 KiB
}

TEST(MapDelayKernel, ForwardsEveryCallToTheModelItOwns) {
  auto owned = std::make_unique<ModelKernel>(VmLikeTopology());
  ModelKernel* model = owned.get();
  MapDelayKernel k(std::move(owned), microseconds(1));
  EXPECT_EQ(k.name(), "model");
  Buffer buf(2 * kPage);  // outlives the container that maps it
  KernelFd container(&k, k.open("/dev/vfio/vfio", O_RDWR).value());
  KernelFd group(&k, k.open(GroupPath(kEduGroup), O_RDWR).value());
  ASSERT_TRUE(SetContainer(k, group.get(), container.get()));
  ASSERT_TRUE(SetIommuType1v2(k, container.get()));
  ASSERT_TRUE(MapDma(k, container.get(), DmaMap{buf.vaddr(), 0x10000, 2 * kPage}));
  EXPECT_EQ(Errno(MapDma(k, container.get(), DmaMap{buf.vaddr(), 0x10000, 2 * kPage})), EEXIST);
  auto maps = model->Entries(container.get());
  ASSERT_TRUE(maps);
  ASSERT_EQ(maps->size(), 1u);
  EXPECT_EQ((*maps)[0].size, 2 * kPage);
  EXPECT_EQ(model->IoctlCount("VFIO_IOMMU_MAP_DMA"), 2u);
}

}  // namespace
}  // namespace vfiod::kernel::testing
