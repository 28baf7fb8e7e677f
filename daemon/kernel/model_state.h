// Internal state of ModelKernel (guarded by ModelKernel::mu_). Lifetimes
// follow the kernel's references:
//  - a container lives while its fd is open or a group is attached to it;
//  - a group stays "opened" (a second open is EBUSY) while its fd or any of
//    its device fds is open, as device fds hold the group file in Linux;
//  - the IOMMU of a container goes away with its last group, unpinning.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <unordered_map>
#include <variant>
#include <vector>

#include "kernel/model_device.h"
#include "kernel/model_iommu.h"
#include "kernel/model_kernel.h"

namespace vfiod::kernel {

struct ModelGroupState;

struct ModelContainer {
  std::vector<ModelGroupState*> groups;  // attached, in attach order
  std::optional<ModelIommu> iommu;       // set by VFIO_SET_IOMMU
};

struct ModelGroupState {
  const ModelGroup* topo = nullptr;
  std::vector<ModelPciFunction*> functions;  // the vfio-bound devices of the group
  bool viable = false;
  bool fd_open = false;
  int open_devices = 0;
  std::shared_ptr<ModelContainer> container;
};

struct ModelDeviceFd {
  ModelGroupState* group = nullptr;
  ModelPciFunction* function = nullptr;
};

using ModelObject = std::variant<std::shared_ptr<ModelContainer>, ModelGroupState*, ModelDeviceFd>;

struct ModelState final : ModelPinner {
  explicit ModelState(const ModelKnobs& k) : knobs(k) {}

  Result<uint64_t> Pin(uint64_t vaddr, uint64_t size, bool write) override;
  void Unpin(uint64_t charged) override { locked_bytes -= charged; }

  /// Bytes of [start, start + size) inside a region mmap the model handed out.
  [[nodiscard]] uint64_t MmioBytes(uint64_t start, uint64_t size) const;
  void AddMmio(uint64_t start, uint64_t size) { mmio[start] = start + size; }
  void RemoveMmio(uint64_t start, uint64_t size);

  ModelKnobs knobs;
  uint64_t locked_bytes = 0;
  std::vector<std::unique_ptr<ModelPciFunction>> functions;
  std::vector<std::unique_ptr<ModelGroupState>> groups;
  std::unordered_map<int, ModelObject> fds;  // every fd the model handed out
  std::map<uint64_t, uint64_t> mmio;         // device mmaps: start -> end
};

/// Detaches a group from its container; the container loses its IOMMU (and
/// every mapping, unpinned) when its last group leaves.
void DetachGroup(ModelGroupState& g);

}  // namespace vfiod::kernel
