// One vfio-pci function of the model: region layout inside its backing memfd,
// an emulated config space, IRQ eventfds, and the device-fd ioctls
// (Linux 6.1 vfio_pci_core.c / vfio_pci_intrs.c behaviour).
//
// Not thread-safe by itself: the owning ModelKernel holds its mutex.
#pragma once

#include <array>
#include <cstdint>
#include <vector>

#include "kernel/model_kernel.h"
#include "proto/result.h"
#include "proto/unique_fd.h"

namespace vfiod::kernel {

class ModelPciFunction {
 public:
  /// Creates the backing memfd holding every region. ENOMEM etc. from memfd.
  static Result<std::unique_ptr<ModelPciFunction>> Create(const ModelDevice& topo);

  [[nodiscard]] const ModelDevice& topo() const { return topo_; }
  /// A new device fd to hand out: its own open file description of the
  /// backing memory, marked with an OFD lock at `mark`, so that the model can
  /// tell when the last reference to it (a dup a client received, an mmap)
  /// is gone, as Linux's file refcount does (StillReferenced).
  Result<int> NewFd(uint64_t mark) const;
  /// Whether the device fd marked `mark` is still open somewhere (its OFD
  /// lock is held), although the fd the model handed out was closed.
  [[nodiscard]] bool StillReferenced(uint64_t mark) const;
  /// The device fd's ioctls (GET_INFO, GET_REGION_INFO, GET_IRQ_INFO,
  /// SET_IRQS, RESET). ENOTTY for others.
  Result<int> Ioctl(unsigned long request, unsigned long arg);
  /// pread/pwrite semantics at a device-fd offset; the config region is
  /// emulated, the others read/write the backing memory. EINVAL outside a
  /// readable/writable region; short at a region's end.
  Result<size_t> Read(int fd, void* buf, size_t len, uint64_t off) const;
  Result<size_t> Write(int fd, const void* buf, size_t len, uint64_t off);
  /// EINVAL unless [off, off + len) lies in one mmap-able region (and in one
  /// of its sparse areas if it has them) and the mapping is MAP_SHARED.
  [[nodiscard]] Result<void> CheckMmap(size_t len, int flags, uint64_t off) const;
  Result<bool> TriggerIrq(uint32_t index, uint32_t vector);
  /// The kernel asks the user to release the device (vfio_pci_core_request,
  /// as an unbind does while a device fd is open): signals the REQ trigger.
  /// False when none is set (Linux then only logs that it blocks).
  bool Request();
  /// First open / last close: vfio-pci resets state when the last fd closes.
  void Opened() { ++open_count_; }
  void Closed();
  [[nodiscard]] int open_count() const { return open_count_; }
  /// A secondary bus reset reached the function: its config space, and its
  /// registers and memory (every region but config), return to the power-on
  /// state (the model's: zeros), as for VFIO_DEVICE_RESET.
  void BusReset() {
    ResetConfig();
    ResetRegions();
  }

 private:
  struct Region {
    uint32_t flags = 0;
    uint64_t size = 0;
    uint64_t offset = 0;
    std::vector<SparseArea> sparse;
  };
  struct Irqs {
    int active = -1;  // the index whose vectors are enabled (INTx/MSI/MSI-X)
    std::vector<UniqueFd> vectors;
    bool intx_masked = false;
    std::array<UniqueFd, 2> err_req;  // ERR and REQ eventfds
  };

  explicit ModelPciFunction(const ModelDevice& topo);
  Result<int> GetInfo(void* arg) const;
  Result<int> GetRegionInfo(void* arg) const;
  Result<int> GetIrqInfo(void* arg) const;
  Result<int> SetIrqs(void* arg);
  /// `fds` for DATA_EVENTFD, `bools` (count entries) for DATA_BOOL.
  Result<int> SetTrigger(uint32_t index, uint32_t dtype, uint32_t start, uint32_t count,
                         const int32_t* fds, const uint8_t* bools);
  /// The ERR or REQ trigger `slot` (vfio_pci_set_ctx_trigger_single):
  /// DATA_NONE signals it (count 1) or unsets it (count 0), EINVAL when none
  /// is set; DATA_BOOL signals it if set; an eventfd sets it, -1 unsets it;
  /// EINVAL for a bool or eventfd with count 0.
  Result<int> SetSingleTrigger(UniqueFd& slot, uint32_t dtype, uint32_t count, const int32_t* fds,
                               const uint8_t* bools);
  Result<int> SetMask(uint32_t index, uint32_t action, uint32_t flags);
  [[nodiscard]] uint32_t IrqCount(uint32_t index) const;
  [[nodiscard]] const Region* RegionAt(uint64_t off, uint32_t* index) const;
  void ResetConfig();
  /// Zeros the backing memory of every region but config (a reset's effect
  /// on the device's registers and memory; mmaps of them see it too).
  void ResetRegions();
  void DisableIrqs();

  const ModelDevice topo_;
  std::array<Region, kPciNumRegions> regions_;
  UniqueFd backing_;  // memfd holding the regions (config is emulated)
  std::vector<uint8_t> config_;
  Irqs irqs_;
  int open_count_ = 0;
};

}  // namespace vfiod::kernel
