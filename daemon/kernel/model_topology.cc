// The default model topology: the QEMU test VM of vm-facts.md.
#include "kernel/model_kernel.h"

namespace vfiod::kernel {
namespace {

ModelRegion Bar(uint32_t index, uint64_t size,
                uint32_t flags = kRegionFlagRead | kRegionFlagWrite | kRegionFlagMmap) {
  ModelRegion r;
  r.index = index;
  r.size = size;
  r.flags = flags;
  return r;
}

}  // namespace

ModelTopology VmLikeTopology() {
  ModelDevice edu;
  edu.bdf = "0000:00:03.0";
  edu.vendor_id = 0x1234;
  edu.device_id = 0x11e8;
  edu.regions = {Bar(kPciBar0RegionIndex, 1 << 20)};
  edu.intx_count = 1;
  edu.msi_count = 1;

  ModelDevice ivshmem;
  ivshmem.bdf = "0000:00:04.0";
  ivshmem.vendor_id = 0x1af4;
  ivshmem.device_id = 0x1110;
  ivshmem.class_code = 0x050000;  // RAM memory controller
  ivshmem.regions = {Bar(0, 256), Bar(2, 64 << 20)};
  ivshmem.intx_count = 0;
  ivshmem.msi_count = 0;

  auto ich9 = [](const char* bdf, uint16_t id, uint32_t cls, const char* driver) {
    ModelDevice d;
    d.bdf = bdf;
    d.vendor_id = 0x8086;
    d.device_id = id;
    d.class_code = cls;
    d.driver = driver;
    d.regions = {Bar(4, 64, kRegionFlagRead | kRegionFlagWrite)};
    return d;
  };
  return ModelTopology{{
      ModelGroup{3, {edu}},
      ModelGroup{4, {ivshmem}},
      ModelGroup{7,
                 {ich9("0000:00:1f.0", 0x2918, 0x060100, "lpc_ich"),
                  ich9("0000:00:1f.2", 0x2922, 0x010601, "ahci"),
                  ich9("0000:00:1f.3", 0x2930, 0x0c0500, "vfio-pci")}},
  }};
}

}  // namespace vfiod::kernel
