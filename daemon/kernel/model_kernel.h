// ModelKernel: an in-memory model of Linux 6.1's VFIO (container, groups,
// vfio-pci devices and the type1v2 IOMMU driver), speaking the same binary
// uAPI through Kernel::ioctl(): it decodes the <linux/vfio.h> structs as the
// kernel does, argsz and capability chains included. It is a model, not a
// set of canned answers: each container keeps an interval map of its DMA
// mappings and follows the type1 rules (see model_iommu.h).
//
// Every fd it hands out is a real fd (memfd), so KernelFd, close, mmap and fd
// passing over a unix socket work normally; closing one through the model
// updates its state. Paths outside /dev/vfio, and fds the model did not hand
// out, are forwarded to the real system calls.
//
// Thread-safe: one mutex (mu_) guards all model state. The model must
// outlive every fd it hands out (KernelFd closes through it); fds still open
// when it is destroyed are closed by it.
//
// Not modelled (known differences from Linux): only VFIO_TYPE1v2_IOMMU can be
// set (type1 v1 and nesting give ENODEV); dirty-page tracking; INTx unmask
// through an irqfd; BAR contents are plain memory, not device registers;
// region offsets are packed (vfio-pci uses index << 40); driver binding is
// told to the model (SetDriver), it does not watch sysfs. MAP_DMA faults the
// range in as pinning does (model_process.cc says how).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "kernel/kernel.h"
#include "kernel/vfio_api.h"

namespace vfiod::kernel {

/// One region of a model device (index per VFIO_PCI_*_REGION_INDEX).
struct ModelRegion {
  uint32_t index = 0;
  uint64_t size = 0;
  uint32_t flags = kRegionFlagRead | kRegionFlagWrite | kRegionFlagMmap;
  /// Non-empty: the region reports a SPARSE_MMAP capability and mmap is
  /// allowed only inside these areas.
  std::vector<SparseArea> sparse_mmap;
};

/// The driver whose devices VFIO can open.
inline constexpr std::string_view kVfioPciDriver = "vfio-pci";

/// One PCI function. The config region (index 7) is added by the model.
struct ModelDevice {
  std::string bdf;  ///< "0000:00:03.0"
  uint16_t vendor_id = 0;
  uint16_t device_id = 0;
  uint32_t class_code = 0x00ff00;  ///< 24-bit class/subclass/prog-if
  /// The driver at start: "vfio-pci"; "" (none: the group stays viable); or
  /// a host driver's name, which makes the group not viable.
  std::string driver = std::string(kVfioPciDriver);
  bool pcie = false;  ///< PCIe: 4 KiB config space and an ERR IRQ index
  bool can_reset = true;
  /// Devices with the same non-empty reset_bus sit on one bus behind a
  /// bridge that can reset it (VFIO_DEVICE_PCI_HOT_RESET resets them all);
  /// "": on the root bus, no hot reset (ENODEV).
  std::string reset_bus;
  std::vector<ModelRegion> regions;  ///< BARs (0-5) and ROM (6)
  uint32_t intx_count = 1;           ///< 1 if the function has an interrupt pin
  uint32_t msi_count = 1;
  uint32_t msix_count = 0;
};

struct ModelGroup {
  int id = 0;  ///< the N of /dev/vfio/N
  std::vector<ModelDevice> devices;
};

struct ModelTopology {
  std::vector<ModelGroup> groups;
};

/// Knobs of the type1 IOMMU driver and of the process being modelled.
struct ModelKnobs {
  uint32_t dma_entry_limit = 65535;  ///< vfio_iommu_type1 dma_entry_limit
  std::vector<IovaRange> iova_ranges = {{0, 0xfedfffff}, {0xfef00000, 0x7fffffffff}};
  uint64_t iova_pgsizes = 0x40201000;   ///< 4K | 2M | 1G
  uint64_t memlock_limit = UINT64_MAX;  ///< RLIMIT_MEMLOCK in bytes; MAX = unlimited
};

/// The QEMU test VM (see vm-facts.md): edu 1234:11e8 at 0000:00:03.0 in group
/// 3; ivshmem-plain 1af4:1110 at 0000:00:04.0 in group 4 (BAR0 256 B, BAR2
/// 64 MiB); and the ICH9 group 7, not viable: 00:1f.3 bound to vfio-pci,
/// 00:1f.0 and 00:1f.2 bound to host drivers.
[[nodiscard]] ModelTopology VmLikeTopology();

/// A DMA entry of a model container (what one MAP_DMA call that succeeded
/// left, less what unmaps took), for tests.
struct ModelEntry {
  uint64_t iova = 0;
  uint64_t size = 0;
  uint64_t vaddr = 0;
  bool read = false;
  bool write = false;
  uint64_t locked_bytes = 0;  ///< bytes charged to the memlock limit
};

struct ModelState;  // model_state.h

class ModelKernel final : public Kernel {
 public:
  explicit ModelKernel(ModelTopology topology, const ModelKnobs& knobs = {});
  ~ModelKernel() override;
  ModelKernel(const ModelKernel&) = delete;
  ModelKernel& operator=(const ModelKernel&) = delete;

  Result<int> open(const std::string& path, int flags) override;
  void close(int fd) override;
  Result<int> ioctl(int fd, unsigned long request, void* arg) override;
  Result<int> ioctl_value(int fd, unsigned long request, unsigned long value) override;
  Result<void*> mmap(void* addr, size_t len, int prot, int flags, int fd, off_t off) override;
  Result<void> munmap(void* addr, size_t len) override;
  Result<size_t> pread(int fd, void* buf, size_t len, off_t off) override;
  Result<size_t> pwrite(int fd, const void* buf, size_t len, off_t off) override;
  [[nodiscard]] std::string name() const override { return "model"; }

  // --- introspection and test hooks --------------------------------------
  [[nodiscard]] const ModelTopology& topology() const { return topology_; }
  /// The IOMMU group of a device of the topology; ENODEV if unknown.
  [[nodiscard]] Result<int> GroupOf(std::string_view bdf) const;
  /// Binds a device to `driver` ("vfio-pci", a host driver's name, or "" to
  /// unbind), as an unbind followed by a probe in Linux 6.1, and with its
  /// effects: a device on vfio-pci is in its group's device list (else
  /// VFIO_GROUP_GET_DEVICE_FD is ENODEV; a group with none has no group file:
  /// open is ENOENT); a host driver makes the group not viable. Atomic: on
  /// error nothing changed. ENODEV: no such device; EWOULDBLOCK: the device
  /// is on vfio-pci and a device fd of it is open (Linux blocks the unbind
  /// until the fd is closed; the model says it would); EBUSY: `driver` claims
  /// kernel DMA and the group is in a container (the probe fails with EBUSY).
  /// An EWOULDBLOCK unbind first signals the device's REQ trigger, if one is
  /// set (VFIO_PCI_REQ_IRQ_INDEX), as Linux asks the device's user to let go:
  /// a test's "the kernel wants the device back".
  Result<void> SetDriver(std::string_view bdf, std::string_view driver);
  /// The driver a device is bound to ("" when none). ENODEV: no such device.
  [[nodiscard]] Result<std::string> DriverOf(std::string_view bdf) const;
  /// Bytes pinned and charged to the memlock limit, over all containers.
  [[nodiscard]] uint64_t LockedBytes() const;
  void SetMemlockLimit(uint64_t bytes);
  /// The DMA entries of a container fd, by IOVA. EBADF: not a model container.
  [[nodiscard]] Result<std::vector<ModelEntry>> Entries(int container_fd) const;
  /// How many times an ioctl was issued (failed ones included), by name
  /// ("VFIO_IOMMU_MAP_DMA").
  [[nodiscard]] uint64_t IoctlCount(std::string_view name) const;
  /// fds the model has handed out and not yet seen closed.
  [[nodiscard]] size_t OpenFdCount() const;
  /// The device raises vector `vector` of IRQ `index`: writes its eventfd.
  /// Returns false when nothing is listening (no eventfd, or INTx masked; an
  /// INTx that fires is masked automatically, as vfio-pci does). EBADF: not a
  /// model device fd; EINVAL: no such vector.
  Result<bool> TriggerIrq(int device_fd, uint32_t index, uint32_t vector);

 private:
  Result<int> Dispatch(int fd, unsigned long request, unsigned long arg);

  const ModelTopology topology_;
  mutable std::mutex mu_;
  std::unique_ptr<ModelState> state_;               // guarded by mu_
  std::map<unsigned long, uint64_t> ioctl_counts_;  // guarded by mu_
};

}  // namespace vfiod::kernel
