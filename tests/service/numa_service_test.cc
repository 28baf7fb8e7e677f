// dma.alloc's NUMA placement on the model: the node of the container's
// devices by default (only when the kernel has it), a node the client names
// instead, and the reply's account of where the pages are. The placement on
// a real two-node machine is proven in the VM (tests/integration/vm_numa_test.cc);
// here the host has node 0 at least.
#include <gtest/gtest.h>

#include "model_service.h"

namespace vfiod::service {
namespace {

using model_service::kEdu;

constexpr uid_t kUser = 1000;
constexpr uint64_t k2M = uint64_t{2} << 20;

class NumaServiceTest : public model_service::ModelServiceTest {
 protected:
  NumaServiceTest() {
    Start(model_service::EduConfig(kUser,
                                   Quota{.locked_bytes = 8 << 20, .mappings = 4, .containers = 1}));
    user_ = Open(kUser);
  }
  /// Edu's sysfs numa_node.
  void SetEduNode(const std::string& text) {
    model_service::Write(root_ / "bus/pci/devices" / kEdu / "numa_node", text + "\n");
  }
  SResult<MapResult> Alloc(std::optional<int> node) {
    if (container_ == 0) {
      auto c = service_->CreateContainer(user_, {kEdu}, "");
      EXPECT_TRUE(c.has_value());
      container_ = c ? c->id : 0;
    }
    AllocRequest r;
    r.container = container_;
    r.size = k2M;
    r.numa_node = node;
    return service_->Alloc(user_, r, {});
  }
  Caller user_;
  ContainerId container_ = 0;
};

TEST_F(NumaServiceTest, WithoutANodeTheDevicesNodeIsAskedAndTheReplySaysWhereThePagesAre) {
  SetEduNode("0");
  auto r = Alloc(std::nullopt);
  ASSERT_TRUE(r.has_value()) << r.error().error.message();
  ASSERT_TRUE(r->mapping.numa.has_value());
  const NumaView& numa = *r->mapping.numa;
  EXPECT_EQ(numa.policy, 0);
  EXPECT_EQ(numa.source, "device");
  // Every byte is present (vfiod populates what it allocates) and on a node.
  uint64_t total = 0;
  for (const auto& [node, bytes] : numa.placement.bytes) {
    EXPECT_GE(node, 0);
    total += bytes;
  }
  EXPECT_EQ(total, k2M);
}

TEST_F(NumaServiceTest, ADeviceWithoutANodeOrOnANodeTheKernelLacksAsksForNone) {
  for (const char* node : {"-1", "4000"}) {
    SetEduNode(node);
    auto r = Alloc(std::nullopt);
    ASSERT_TRUE(r.has_value()) << node << ": " << r.error().error.message();
    EXPECT_EQ(r->mapping.numa->policy, -1) << node;
    EXPECT_EQ(r->mapping.numa->source, "none") << node;
  }
}

TEST_F(NumaServiceTest, ANamedNodeWinsOverTheDevicesAndMinusOneMeansAnywhere) {
  SetEduNode("4000");  // would be ignored anyway; the request decides
  auto named = Alloc(0);
  ASSERT_TRUE(named.has_value()) << named.error().error.message();
  EXPECT_EQ(named->mapping.numa->policy, 0);
  EXPECT_EQ(named->mapping.numa->source, "request");
  SetEduNode("0");
  auto anywhere = Alloc(-1);
  ASSERT_TRUE(anywhere.has_value());
  EXPECT_EQ(anywhere->mapping.numa->policy, -1);
  EXPECT_EQ(anywhere->mapping.numa->source, "none");
}

TEST_F(NumaServiceTest, ANamedNodeTheKernelLacksIsRefusedAndChargesNothing) {
  auto r = Alloc(1000);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().kind, ErrorKind::kInvalidParams);
  EXPECT_EQ(r.error().error.code, EINVAL);
  EXPECT_NE(r.error().error.detail.find("not online"), std::string::npos) << r.error().error.detail;
  EXPECT_EQ(service_->Status().locked_bytes, 0u);
  EXPECT_EQ(model_.LockedBytes(), 0u);
  EXPECT_EQ(faulty_->IoctlCalls("VFIO_IOMMU_MAP_DMA"), 0u);
}

}  // namespace
}  // namespace vfiod::service
