// The typed ioctls: argument checks happen before any ioctl, replies are
// checked and decoded defensively.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <linux/vfio.h>

#include <cstring>

#include "kernel/cap_chain.h"
#include "model_fixture.h"

namespace vfiod::kernel::testing {
namespace {

using ::testing::_;
using ::testing::Invoke;
using ::testing::Return;

class MockKernel : public Kernel {
 public:
  MOCK_METHOD(Result<int>, open, (const std::string&, int), (override));
  MOCK_METHOD(void, close, (int), (override));
  MOCK_METHOD(Result<int>, ioctl, (int, unsigned long, void*), (override));
  MOCK_METHOD(Result<int>, ioctl_value, (int, unsigned long, unsigned long), (override));
  MOCK_METHOD(Result<void*>, mmap, (void*, size_t, int, int, int, off_t), (override));
  MOCK_METHOD(Result<void>, munmap, (void*, size_t), (override));
  MOCK_METHOD(Result<size_t>, pread, (int, void*, size_t, off_t), (override));
  MOCK_METHOD(Result<size_t>, pwrite, (int, const void*, size_t, off_t), (override));
  MOCK_METHOD(std::string, name, (), (const, override));
};

TEST(VfioApiChecks, BadMapArgumentsNeverReachTheKernel) {
  MockKernel k;
  EXPECT_CALL(k, ioctl(_, _, _)).Times(0);
  auto map = [&](uint64_t vaddr, uint64_t iova, uint64_t size, bool r = true, bool w = true) {
    return MapDma(k, 3, DmaMap{vaddr, iova, size, r, w});
  };
  EXPECT_EQ(Errno(map(0x10000, 0x10000, 0)), EINVAL);                           // empty
  EXPECT_EQ(Errno(map(0x10000, 0x10800, kPage)), EINVAL);                       // iova unaligned
  EXPECT_EQ(Errno(map(0x10800, 0x10000, kPage)), EINVAL);                       // vaddr unaligned
  EXPECT_EQ(Errno(map(0x10000, 0x10000, kPage + 1)), EINVAL);                   // size unaligned
  EXPECT_EQ(Errno(map(0x10000, ~uint64_t{0} - kPage + 1, 2 * kPage)), EINVAL);  // iova wraps
  EXPECT_EQ(Errno(map(~uint64_t{0} - kPage + 1, 0x10000, 2 * kPage)), EINVAL);  // vaddr wraps
  EXPECT_EQ(Errno(map(0x10000, 0x10000, kPage, false, false)), EINVAL);         // no access
  EXPECT_EQ(Errno(UnmapDma(k, 3, 0x10000, 0)), EINVAL);
  EXPECT_EQ(Errno(UnmapDma(k, 3, 0x10800, kPage)), EINVAL);
  EXPECT_EQ(Errno(GetDeviceFd(k, 4, "")), EINVAL);
  EXPECT_EQ(Errno(SetIrqEventfds(k, 5, 0, 0, {})), EINVAL);
  auto r = map(0x10000, 0x10800, kPage);
  EXPECT_EQ(r.error().op, "VFIO_IOMMU_MAP_DMA");
}

TEST(VfioApiChecks, MmioNoPinIsFalseWithoutAskingOn61Headers) {
  MockKernel k;
#ifndef VFIO_MMIO_NO_PIN
  EXPECT_CALL(k, ioctl_value(_, _, _)).Times(0);
  EXPECT_FALSE(CheckExtension(k, 3, Extension::kMmioNoPin).value());
#endif
  EXPECT_CALL(k, ioctl_value(3, VFIO_CHECK_EXTENSION, VFIO_UNMAP_ALL)).WillOnce(Return(1));
  EXPECT_TRUE(CheckExtension(k, 3, Extension::kUnmapAll).value());
}

TEST(VfioApiChecks, UnmapRejectsAnImpossibleReportedSize) {
  MockKernel k;
  EXPECT_CALL(k, ioctl(3, VFIO_IOMMU_UNMAP_DMA, _))
      .WillOnce(Invoke([](int, unsigned long, void* a) {
        auto* u = static_cast<vfio_iommu_type1_dma_unmap*>(a);
        u->size *= 2;  // more than was asked for
        return Result<int>(0);
      }));
  EXPECT_EQ(Errno(UnmapDma(k, 3, 0x10000, kPage)), EPROTO);
}

TEST(VfioApiChecks, InvalidateVaddrSendsItsFlagAndRejectsAnImpossibleReportedSize) {
  MockKernel k;
  EXPECT_CALL(k, ioctl(3, VFIO_IOMMU_UNMAP_DMA, _))
      .WillOnce(Invoke([](int, unsigned long, void* a) {
        auto* u = static_cast<vfio_iommu_type1_dma_unmap*>(a);
        EXPECT_EQ(u->flags, VFIO_DMA_UNMAP_FLAG_VADDR);
        return Result<int>(0);
      }))
      .WillOnce(Invoke([](int, unsigned long, void* a) {
        auto* u = static_cast<vfio_iommu_type1_dma_unmap*>(a);
        u->size += 0x800;  // not page-aligned
        return Result<int>(0);
      }));
  EXPECT_EQ(InvalidateVaddr(k, 3, 0x10000, kPage).value(), kPage);
  auto r = InvalidateVaddr(k, 3, 0x10000, kPage);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, EPROTO);
  EXPECT_EQ(r.error().op, "VFIO_IOMMU_UNMAP_DMA(FLAG_VADDR)");
}

TEST(VfioApiChecks, ErrorsCarryTheIoctlName) {
  MockKernel k;
  EXPECT_CALL(k, ioctl(_, _, _)).WillOnce(Return(ErrnoError("VFIO_GROUP_GET_STATUS", ENODEV)));
  auto r = GetGroupStatus(k, 4);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ENODEV);
  EXPECT_EQ(r.error().op, "VFIO_GROUP_GET_STATUS");
}

/// Replies to VFIO_IOMMU_GET_INFO with a fixed part whose cap_offset is `cap`
/// and one IOVA_RANGE capability claiming `nr` ranges.
void ReplyWithChain(void* arg, uint32_t cap, uint32_t nr) {
  auto* info = static_cast<vfio_iommu_type1_info*>(arg);
  info->flags = VFIO_IOMMU_INFO_PGSIZES | VFIO_IOMMU_INFO_CAPS;
  info->iova_pgsizes = 0x1000;
  uint32_t need = sizeof *info + sizeof(vfio_iommu_type1_info_cap_iova_range) + 16;
  if (info->argsz < need) {
    info->argsz = need;
    info->cap_offset = 0;
    return;
  }
  info->cap_offset = cap;
  vfio_iommu_type1_info_cap_iova_range r{};
  r.header.id = VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE;
  r.header.version = 1;
  r.nr_iovas = nr;
  std::memcpy(static_cast<char*>(arg) + sizeof *info, &r, sizeof r);
  vfio_iova_range one{0x1000, 0xffff};
  std::memcpy(static_cast<char*>(arg) + sizeof *info + sizeof r, &one, sizeof one);
}

TEST(VfioApiDecode, RequeriesWithTheArgszTheKernelAsksFor) {
  MockKernel k;
  EXPECT_CALL(k, ioctl(3, VFIO_IOMMU_GET_INFO, _))
      .Times(2)
      .WillRepeatedly(Invoke([](int, unsigned long, void* a) {
        ReplyWithChain(a, sizeof(vfio_iommu_type1_info), 1);
        return Result<int>(0);
      }));
  IommuInfo info = GetIommuInfo(k, 3).value();
  EXPECT_EQ(info.iova_ranges, (std::vector<IovaRange>{{0x1000, 0xffff}}));
  EXPECT_FALSE(info.dma_avail.has_value());
}

TEST(VfioApiDecode, MalformedChainsAreEproto) {
  for (auto [cap, nr] :
       {std::pair<uint32_t, uint32_t>{4096, 1}, {sizeof(vfio_iommu_type1_info), 9}}) {
    MockKernel k;
    EXPECT_CALL(k, ioctl(3, VFIO_IOMMU_GET_INFO, _))
        .WillRepeatedly(Invoke([cap, nr](int, unsigned long, void* a) {
          ReplyWithChain(a, cap, nr);
          return Result<int>(0);
        }));
    EXPECT_EQ(Errno(GetIommuInfo(k, 3)), EPROTO) << "cap_offset " << cap << " nr " << nr;
  }
}

TEST(VfioApiDecode, ArgszThatKeepsGrowingIsEproto) {
  MockKernel k;
  EXPECT_CALL(k, ioctl(3, VFIO_IOMMU_GET_INFO, _))
      .WillRepeatedly(Invoke([](int, unsigned long, void* a) {
        static_cast<vfio_iommu_type1_info*>(a)->argsz += 8;
        return Result<int>(0);
      }));
  EXPECT_EQ(Errno(GetIommuInfo(k, 3)), EPROTO);
}

}  // namespace
}  // namespace vfiod::kernel::testing
