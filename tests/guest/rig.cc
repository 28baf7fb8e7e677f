#include "rig.h"

#include <cstdlib>
#include <cstring>
#include <vector>

namespace vfiod::testing {

std::string Env(const char* name) {
  const char* v = std::getenv(name);
  return v == nullptr ? std::string() : std::string(v);
}

void GuestTest::SetUp() {
  edu_bdf_ = Env("VFIOD_EDU_BDF");
  ivshmem_bdf_ = Env("VFIOD_IVSHMEM_BDF");
  nonviable_bdf_ = Env("VFIOD_NONVIABLE_BDF");
  ASSERT_FALSE(edu_bdf_.empty() || ivshmem_bdf_.empty() || nonviable_bdf_.empty())
      << "VFIOD_EDU_BDF, VFIOD_IVSHMEM_BDF and VFIOD_NONVIABLE_BDF must be set: run this "
         "binary in the guest through tests/vm/vm_run.sh";
  uint64_t seed = std::random_device{}();
  if (std::string s = Env("VFIOD_TEST_SEED"); !s.empty()) {
    seed = std::stoull(s);
  }
  RecordProperty("seed", std::to_string(seed));
  std::printf("random seed %llu (set VFIOD_TEST_SEED to repeat)\n",
              static_cast<unsigned long long>(seed));
  rng_.seed(seed);
}

int GuestTest::GroupOf(const std::string& bdf) const {
  auto dev = sysfs_.Get(bdf);
  EXPECT_TRUE(dev.has_value()) << dev.error().message();
  if (!dev || !dev->iommu_group) {
    ADD_FAILURE() << bdf << " has no IOMMU group";
    return -1;
  }
  return *dev->iommu_group;
}

std::shared_ptr<vfio::Device> GuestTest::OpenDevice(
    const std::shared_ptr<vfio::Container>& container, const std::string& bdf) const {
  auto group = vfio::Group::Open(*kernel_, GroupOf(bdf), &sysfs_);
  EXPECT_TRUE(group.has_value()) << group.error().message();
  if (!group) {
    return nullptr;
  }
  auto attached = (*group)->Attach(container);
  EXPECT_TRUE(attached.has_value()) << attached.error().message();
  auto dev = vfio::Device::Open(*group, bdf);
  EXPECT_TRUE(dev.has_value()) << dev.error().message();
  return dev ? *dev : nullptr;
}

bool GuestTest::OpenEdu() {
  auto container = vfio::Container::Open(*kernel_);
  EXPECT_TRUE(container.has_value()) << container.error().message();
  if (!container) {
    return false;
  }
  container_ = *container;
  auto dev = OpenDevice(container_, edu_bdf_);
  if (dev == nullptr) {
    return false;
  }
  auto edu = EduDevice::Open(dev);
  EXPECT_TRUE(edu.has_value()) << edu.error().message();
  if (!edu) {
    return false;
  }
  edu_ = std::make_unique<EduDevice>(std::move(*edu));
  return true;
}

void GuestTest::Randomize(std::span<std::byte> buf) {
  for (std::byte& b : buf) {
    b = static_cast<std::byte>(rng_() & 0xff);
  }
}

void ExpectRoundTrip(EduDevice& edu, std::span<std::byte> src, uint64_t src_iova,
                     std::span<std::byte> dst, uint64_t dst_iova, EduCompletion completion,
                     uint32_t device_offset) {
  ASSERT_EQ(src.size(), dst.size());
  auto len = static_cast<uint32_t>(src.size());
  // Guard bytes: the destination's neighbours must survive the transfer.
  std::byte* before = dst.data() - 1;
  std::byte* after = dst.data() + dst.size();
  *before = std::byte{0x5a};
  *after = std::byte{0xa5};
  std::memset(dst.data(), 0, dst.size());
  std::vector<std::byte> expected(src.begin(), src.end());

  auto out = edu.Dma(EduDirection::kToDevice, src_iova, device_offset, len, completion);
  ASSERT_TRUE(out.has_value()) << out.error().message();
  auto in = edu.Dma(EduDirection::kFromDevice, dst_iova, device_offset, len, completion);
  ASSERT_TRUE(in.has_value()) << in.error().message();

  EXPECT_EQ(std::memcmp(dst.data(), expected.data(), len), 0)
      << "DMA round trip of " << len << " bytes differs";
  EXPECT_EQ(*before, std::byte{0x5a}) << "the DMA wrote before its destination";
  EXPECT_EQ(*after, std::byte{0xa5}) << "the DMA wrote past its destination";
}

}  // namespace vfiod::testing
