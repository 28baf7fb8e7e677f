// Internal state of ModelKernel (guarded by ModelKernel::mu_). Lifetimes
// follow the kernel's references:
//  - a container lives while its fd is open or a group is attached to it;
//  - a group stays "opened" (a second open is EBUSY) while its fd or any of
//    its device fds is open, as device fds hold the group file in Linux; a
//    device fd counts as open while any copy of it is (held_devices);
//  - the IOMMU of a container goes away with its last group, unpinning;
//  - a group file exists (open() finds it) while a device of the group is
//    bound to vfio-pci, or while the group is still open.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
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

/// True for the driver that registers devices with VFIO (vfio_pci_core):
/// only its devices are in a group's device list.
[[nodiscard]] bool RegistersWithVfio(std::string_view driver);
/// True when binding `driver` claims the group's DMA for the kernel, which
/// makes the group not viable (Linux 5.19+: a driver without
/// driver_managed_dma; vfio-pci, pci-stub and pcieport set it, and a device
/// with no driver claims nothing).
[[nodiscard]] bool ClaimsKernelDma(std::string_view driver);

/// A device of a group and the driver it is bound to ("" when none).
struct ModelMember {
  ModelPciFunction* function = nullptr;
  std::string driver;
};

struct ModelGroupState {
  /// The member bound to vfio-pci with this name; nullptr when none (it is
  /// then not in the group's VFIO device list).
  [[nodiscard]] ModelPciFunction* VfioDevice(std::string_view bdf) const;
  /// No member's driver claims kernel DMA (iommu_group_dma_owner_claimed).
  [[nodiscard]] bool Viable() const;
  /// A member is bound to vfio-pci: the group file exists.
  [[nodiscard]] bool Registered() const;

  const ModelGroup* topo = nullptr;
  std::vector<ModelMember> members;  // every device of the group, topology order
  bool fd_open = false;
  int open_devices = 0;
  std::shared_ptr<ModelContainer> container;
};

struct ModelDeviceFd {
  ModelGroupState* group = nullptr;
  ModelPciFunction* function = nullptr;
  uint64_t mark = 0;  ///< its OFD lock (ModelPciFunction::NewFd)
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
  /// Device fds closed by their opener while a copy (a dup sent to a
  /// client, an mmap) still holds the file: still open for VFIO, like Linux.
  std::vector<ModelDeviceFd> held_devices;
  uint64_t next_mark = 0;
  std::map<uint64_t, uint64_t> mmio;  // device mmaps: start -> end
};

/// Detaches a group from its container; the container loses its IOMMU (and
/// every mapping, unpinned) when its last group leaves.
void DetachGroup(ModelGroupState& g);

/// The last reference to a device fd is gone: the device closes (reset on
/// its last close) and the group lets go of the container if nothing else
/// holds it.
void ReleaseDevice(const ModelDeviceFd& d);

/// Releases the held devices whose last copy has been closed meanwhile.
void ReapHeldDevices(ModelState& s);

/// VFIO_DEVICE_GET_PCI_HOT_RESET_INFO and VFIO_DEVICE_PCI_HOT_RESET on a
/// device fd of `d` (model_hot_reset.cc); `arg` is the user's struct.
Result<int> HotResetInfo(const ModelState& s, const ModelDeviceFd& d, void* arg);
Result<int> HotReset(ModelState& s, const ModelDeviceFd& d, void* arg);

}  // namespace vfiod::kernel
