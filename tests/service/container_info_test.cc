// container.info on the model kernel: DMA_AVAIL follows the entries mapped
// (down after a map by its chunks, up after a free) without a
// VFIO_IOMMU_GET_INFO per map or unmap, and the container's totals follow
// the engine through maps, frees and a failed map; every view of a mapping
// is the engine's record of it.
#include <gtest/gtest.h>

#include <filesystem>

#include "kernel/fault_kernel.h"
#include "kernel/model_kernel.h"
#include "model_service.h"
#include "service/service.h"

namespace vfiod::service {
namespace {

using model_service::kEdu;
using model_service::kIvshmem;

constexpr uint64_t kChunk = 2 << 20;
constexpr const char* kGetInfo = "VFIO_IOMMU_GET_INFO";

class ContainerInfoTest : public model_service::ModelServiceTest {
 protected:
  ContainerInfoTest() {
    Config config;
    config.limits.map_chunk_bytes = kChunk;
    Start(config);
    root_caller_ = Caller{service_->OpenSession(Identity{0, 0, {}}), Identity{0, 0, {}}};
  }
  ContainerView Info(ContainerId id) {
    auto info = service_->ContainerInfo(root_caller_, id);
    EXPECT_TRUE(info.has_value());
    return info ? info->first : ContainerView{};
  }
  AllocRequest Alloc(ContainerId c, uint64_t size) {
    AllocRequest r;
    r.container = c;
    r.size = size;
    return r;
  }

  Caller root_caller_;
};

TEST_F(ContainerInfoTest, DmaAvailGoesDownAfterAMapAndUpAfterAFree) {
  auto c = service_->CreateContainer(root_caller_, {kEdu, kIvshmem}, "");
  ASSERT_TRUE(c.has_value()) << c.error().error.message();
  ASSERT_TRUE(c->iommu.dma_avail.has_value());
  const uint32_t limit = *c->iommu.dma_avail;
  EXPECT_EQ(limit, kernel::ModelKnobs{}.dma_entry_limit);  // nothing mapped yet
  const uint64_t get_info_calls = faulty_->IoctlCalls(kGetInfo);

  auto four = service_->Alloc(root_caller_, Alloc(c->id, 4 * kChunk), {});
  ASSERT_TRUE(four.has_value()) << four.error().error.message();
  EXPECT_EQ(four->mapping.chunks, 4u);
  ContainerView view = Info(c->id);
  EXPECT_EQ(view.iommu.dma_avail, limit - 4);
  EXPECT_EQ(view.dma_entries_used, 4u);
  EXPECT_EQ(view.mappings, 1u);
  EXPECT_EQ(view.mapped_bytes, 4 * kChunk);

  auto bar = service_->MapBar(root_caller_, MapBarRequest{c->id, kIvshmem, 0, {}, ""});
  ASSERT_TRUE(bar.has_value()) << bar.error().error.message();
  view = Info(c->id);
  EXPECT_EQ(view.iommu.dma_avail, limit - 5);
  EXPECT_EQ(view.mappings, 2u);

  ASSERT_TRUE(service_->FreeMapping(root_caller_, four->mapping.id).has_value());
  view = Info(c->id);
  EXPECT_EQ(view.iommu.dma_avail, limit - 1);
  EXPECT_EQ(view.dma_entries_used, 1u);
  EXPECT_EQ(view.mappings, 1u);
  EXPECT_EQ(view.mapped_bytes, bar->mapping.size);

  ASSERT_TRUE(service_->FreeMapping(root_caller_, bar->mapping.id).has_value());
  view = Info(c->id);
  EXPECT_EQ(view.iommu.dma_avail, limit);
  EXPECT_EQ(view.mappings, 0u);
  EXPECT_EQ(view.mapped_bytes, 0u);
  // Maps, frees and info calls asked the kernel for nothing but the DMA.
  EXPECT_EQ(faulty_->IoctlCalls(kGetInfo), get_info_calls);
}

TEST_F(ContainerInfoTest, AFailedMapLeavesTheTotalsAsTheyWere) {
  auto c = service_->CreateContainer(root_caller_, {kEdu}, "");
  ASSERT_TRUE(c.has_value()) << c.error().error.message();
  const uint32_t limit = *c->iommu.dma_avail;
  auto one = service_->Alloc(root_caller_, Alloc(c->id, kChunk), {});
  ASSERT_TRUE(one.has_value()) << one.error().error.message();
  // The third chunk fails: the two before it are unmapped again.
  faulty_->Arm(kernel::Fault::Ioctl("VFIO_IOMMU_MAP_DMA", 3, EFAULT));
  auto failed = service_->Alloc(root_caller_, Alloc(c->id, 4 * kChunk), {});
  ASSERT_FALSE(failed.has_value());
  faulty_->Clear();
  const ContainerView view = Info(c->id);
  EXPECT_EQ(view.iommu.dma_avail, limit - 1);
  EXPECT_EQ(view.dma_entries_used, 1u);
  EXPECT_EQ(view.mappings, 1u);
  EXPECT_EQ(view.mapped_bytes, kChunk);
}

// One home per mapping: the map's reply, dma.list, dma.info and
// container.info all describe the engine's record, so they agree field by
// field; status counts what the ownership index charged.
TEST_F(ContainerInfoTest, EveryViewOfAMappingDescribesTheSameRecord) {
  auto c = service_->CreateContainer(root_caller_, {kEdu, kIvshmem}, "");
  ASSERT_TRUE(c.has_value()) << c.error().error.message();
  AllocRequest named = Alloc(c->id, 3 * kChunk);
  named.backing = wire::Backing::kThp;
  named.name = "ring";
  auto thp = service_->Alloc(root_caller_, named, {});
  ASSERT_TRUE(thp.has_value()) << thp.error().error.message();
  auto bar = service_->MapBar(root_caller_, MapBarRequest{c->id, kIvshmem, 0, {}, ""});
  ASSERT_TRUE(bar.has_value()) << bar.error().error.message();
  EXPECT_EQ(thp->mapping.backing, "thp");
  EXPECT_EQ(thp->mapping.name, "ring");
  EXPECT_EQ(bar->mapping.backing, "bar");
  EXPECT_TRUE(bar->mapping.mmio);

  auto same = [](const MappingView& a, const MappingView& b) {
    return a.id == b.id && a.container == b.container && a.name == b.name &&
           a.owner_uid == b.owner_uid && a.iova == b.iova && a.size == b.size &&
           a.backing == b.backing && a.mmio == b.mmio && a.aligned == b.aligned &&
           a.mmio_no_pin == b.mmio_no_pin && a.chunks == b.chunks && a.ioctls == b.ioctls;
  };
  auto listed = service_->ListMappings(root_caller_, c->id);
  ASSERT_TRUE(listed.has_value());
  auto info = service_->ContainerInfo(root_caller_, c->id);
  ASSERT_TRUE(info.has_value());
  ASSERT_EQ(listed->size(), 2u);
  ASSERT_EQ(info->second.size(), 2u);
  for (const MapResult* made : {&*thp, &*bar}) {
    auto one = service_->MappingInfo(root_caller_, made->mapping.id);
    ASSERT_TRUE(one.has_value());
    EXPECT_TRUE(same(*one, made->mapping)) << made->mapping.backing;
    const size_t at = made == &*thp ? 0 : 1;  // by id: the order they were made in
    EXPECT_TRUE(same((*listed)[at], made->mapping)) << made->mapping.backing;
    EXPECT_TRUE(same(info->second[at], made->mapping)) << made->mapping.backing;
  }
  const StatusView status = service_->Status();
  EXPECT_EQ(status.mappings, 2u);
  EXPECT_EQ(status.locked_bytes, 3 * kChunk);  // the BAR pins nothing
  ASSERT_TRUE(service_->FreeMapping(root_caller_, thp->mapping.id).has_value());
  EXPECT_EQ(service_->Status().locked_bytes, 0u);
  EXPECT_EQ(service_->ListMappings(root_caller_, c->id)->size(), 1u);
}

}  // namespace
}  // namespace vfiod::service
