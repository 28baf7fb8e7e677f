// A VFIO device fd: info, regions, PCI config space, reset.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "kernel/kernel.h"
#include "kernel/vfio_api.h"
#include "proto/result.h"
#include "vfio/group.h"

namespace vfiod::vfio {

/// PCI command register (config offset 4) and its bus-master enable bit.
inline constexpr uint32_t kPciCommandOffset = 0x04;
inline constexpr uint16_t kPciCommandMemory = 0x2;
inline constexpr uint16_t kPciCommandBusMaster = 0x4;

/// Owns a device fd and a share of its group, so the group (and through it the
/// container) outlives the device: the kernel refuses to detach a group whose
/// devices are open. Region mappings and IRQ sets hold a shared_ptr to the
/// device for the same reason. Not movable; calls may come from any thread
/// (they are independent preads/pwrites/ioctls), except that a read-modify-write
/// of config space (SetBusMaster) is not atomic against another writer.
class Device {
 public:
  /// VFIO_GROUP_GET_DEVICE_FD, then VFIO_DEVICE_GET_INFO. EINVAL: the group is
  /// not attached to a container; ENODEV: `bdf` is not in the group (Linux 6.1);
  /// EPERM: not viable.
  [[nodiscard]] static Result<std::shared_ptr<Device>> Open(std::shared_ptr<Group> group,
                                                            std::string_view bdf);
  /// Takes over `fd`, a device fd of `bdf` in `group` that a previous vfiod
  /// opened (from the fd store: a live restart), with VFIO_DEVICE_GET_INFO.
  /// Nothing is reopened, so the device is not reset and keeps its state.
  /// The kernel cannot say which device an fd is: the caller vouches for
  /// `bdf` (the state record that named the fd). EINVAL: no group, or it
  /// is not attached to a container; errno of GET_INFO (ENOTTY: not a
  /// device fd).
  [[nodiscard]] static Result<std::shared_ptr<Device>> Adopt(std::shared_ptr<Group> group,
                                                             std::string_view bdf,
                                                             kernel::KernelFd fd);

  Device(const Device&) = delete;
  Device& operator=(const Device&) = delete;
  ~Device() = default;

  [[nodiscard]] const std::string& name() const { return name_; }
  [[nodiscard]] const kernel::DeviceInfo& info() const { return info_; }
  [[nodiscard]] int fd() const { return fd_.get(); }
  [[nodiscard]] kernel::Kernel& kernel() const { return *kernel_; }
  [[nodiscard]] const std::shared_ptr<Group>& group() const { return group_; }

  /// VFIO_DEVICE_GET_REGION_INFO. EINVAL: index >= num_regions.
  [[nodiscard]] Result<kernel::RegionInfo> RegionInfo(uint32_t index) const;
  /// VFIO_DEVICE_GET_IRQ_INFO. EINVAL: index >= num_irqs.
  [[nodiscard]] Result<kernel::IrqInfo> IrqInfo(uint32_t index) const;

  /// Reads/writes `buf.size()` bytes at `offset` within region `index` through
  /// the device fd (no mmap). EINVAL: outside the region or not readable/writable;
  /// EIO: short transfer.
  [[nodiscard]] Result<void> ReadRegion(uint32_t index, uint64_t offset,
                                        std::span<std::byte> buf) const;
  [[nodiscard]] Result<void> WriteRegion(uint32_t index, uint64_t offset,
                                         std::span<const std::byte> buf) const;

  /// PCI config space accessors (region VFIO_PCI_CONFIG_REGION_INDEX), little endian.
  [[nodiscard]] Result<uint8_t> ReadConfig8(uint32_t offset) const;
  [[nodiscard]] Result<uint16_t> ReadConfig16(uint32_t offset) const;
  [[nodiscard]] Result<uint32_t> ReadConfig32(uint32_t offset) const;
  [[nodiscard]] Result<void> WriteConfig16(uint32_t offset, uint16_t value) const;
  [[nodiscard]] Result<void> WriteConfig32(uint32_t offset, uint32_t value) const;
  /// Enabling sets the bus-master and memory-space bits of the command register;
  /// disabling clears only bus-master (MMIO through the BARs keeps working).
  [[nodiscard]] Result<void> SetBusMaster(bool enable) const;

  /// VFIO_DEVICE_RESET. ENOTTY when the device cannot be reset (info().can_reset()).
  [[nodiscard]] Result<void> Reset() const;

 private:
  Device(std::shared_ptr<Group> group, std::string name, kernel::KernelFd fd)
      : kernel_(&group->kernel()),
        group_(std::move(group)),
        name_(std::move(name)),
        fd_(std::move(fd)) {}
  [[nodiscard]] Result<kernel::RegionInfo> AccessibleRegion(uint32_t index, uint64_t offset,
                                                            size_t len, bool write) const;

  kernel::Kernel* kernel_;
  // Teardown order: fd_ (declared after group_) closes first; only then is the
  // group share released, so the group can detach from its container.
  std::shared_ptr<Group> group_;
  std::string name_;
  kernel::DeviceInfo info_;
  kernel::KernelFd fd_;
};

}  // namespace vfiod::vfio
