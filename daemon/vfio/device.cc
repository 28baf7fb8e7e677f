#include "vfio/device.h"

#include <cstring>

namespace vfiod::vfio {

Result<std::shared_ptr<Device>> Device::Open(std::shared_ptr<Group> group, std::string_view bdf) {
  if (!group) {
    return Fail(EINVAL, "VFIO_GROUP_GET_DEVICE_FD", "no group");
  }
  if (!group->container()) {
    return Fail(EINVAL, "VFIO_GROUP_GET_DEVICE_FD",
                "attach group " + std::to_string(group->number()) + " to a container first");
  }
  kernel::Kernel& k = group->kernel();
  int raw = VFIOD_TRY(kernel::GetDeviceFd(k, group->fd(), bdf));
  std::shared_ptr<Device> dev(
      new Device(std::move(group), std::string(bdf), kernel::KernelFd(&k, raw)));
  dev->info_ = VFIOD_TRY(kernel::GetDeviceInfo(k, dev->fd()));
  return dev;
}

Result<std::shared_ptr<Device>> Device::Adopt(std::shared_ptr<Group> group, std::string_view bdf,
                                              kernel::KernelFd fd) {
  if (!group || !group->container()) {
    return Fail(EINVAL, "adopt device", std::string(bdf) + ": its group is not in a container");
  }
  kernel::Kernel& k = group->kernel();
  std::shared_ptr<Device> dev(new Device(std::move(group), std::string(bdf), std::move(fd)));
  dev->info_ = VFIOD_TRY(kernel::GetDeviceInfo(k, dev->fd()));
  return dev;
}

Result<kernel::RegionInfo> Device::RegionInfo(uint32_t index) const {
  if (index >= info_.num_regions) {
    return Fail(EINVAL, "VFIO_DEVICE_GET_REGION_INFO",
                name_ + " has " + std::to_string(info_.num_regions) + " regions, asked for " +
                    std::to_string(index));
  }
  return kernel::GetRegionInfo(*kernel_, fd(), index);
}

Result<kernel::IrqInfo> Device::IrqInfo(uint32_t index) const {
  if (index >= info_.num_irqs) {
    return Fail(EINVAL, "VFIO_DEVICE_GET_IRQ_INFO",
                name_ + " has " + std::to_string(info_.num_irqs) + " IRQ indexes, asked for " +
                    std::to_string(index));
  }
  return kernel::GetIrqInfo(*kernel_, fd(), index);
}

Result<kernel::RegionInfo> Device::AccessibleRegion(uint32_t index, uint64_t offset, size_t len,
                                                    bool write) const {
  kernel::RegionInfo region = VFIOD_TRY(RegionInfo(index));
  const char* op = write ? "write device region" : "read device region";
  if (write ? !region.writable() : !region.readable()) {
    return Fail(EINVAL, op,
                "region " + std::to_string(index) + " is not " + (write ? "writable" : "readable"));
  }
  if (offset > region.size || len > region.size - offset) {
    return Fail(EINVAL, op, "access past the end of region " + std::to_string(index));
  }
  return region;
}

Result<void> Device::ReadRegion(uint32_t index, uint64_t offset, std::span<std::byte> buf) const {
  kernel::RegionInfo region = VFIOD_TRY(AccessibleRegion(index, offset, buf.size(), false));
  size_t n = VFIOD_TRY(
      kernel_->pread(fd(), buf.data(), buf.size(), static_cast<off_t>(region.offset + offset)));
  if (n != buf.size()) {
    return Fail(EIO, "read device region", "short read from " + name_);
  }
  return Ok();
}

Result<void> Device::WriteRegion(uint32_t index, uint64_t offset,
                                 std::span<const std::byte> buf) const {
  kernel::RegionInfo region = VFIOD_TRY(AccessibleRegion(index, offset, buf.size(), true));
  size_t n = VFIOD_TRY(
      kernel_->pwrite(fd(), buf.data(), buf.size(), static_cast<off_t>(region.offset + offset)));
  if (n != buf.size()) {
    return Fail(EIO, "write device region", "short write to " + name_);
  }
  return Ok();
}

namespace {
template <class T>
Result<T> ReadConfigAs(const Device& dev, uint32_t offset) {
  std::byte raw[sizeof(T)];
  VFIOD_TRY(dev.ReadRegion(kernel::kPciConfigRegionIndex, offset, raw));
  T value = 0;
  for (size_t i = 0; i < sizeof(T); ++i) {  // config space is little endian
    value |= static_cast<T>(std::to_integer<T>(raw[i]) << (8 * i));
  }
  return value;
}

template <class T>
Result<void> WriteConfigAs(const Device& dev, uint32_t offset, T value) {
  std::byte raw[sizeof(T)];
  for (size_t i = 0; i < sizeof(T); ++i) {
    raw[i] = static_cast<std::byte>((value >> (8 * i)) & 0xff);
  }
  return dev.WriteRegion(kernel::kPciConfigRegionIndex, offset, raw);
}
}  // namespace

Result<uint8_t> Device::ReadConfig8(uint32_t offset) const {
  return ReadConfigAs<uint8_t>(*this, offset);
}
Result<uint16_t> Device::ReadConfig16(uint32_t offset) const {
  return ReadConfigAs<uint16_t>(*this, offset);
}
Result<uint32_t> Device::ReadConfig32(uint32_t offset) const {
  return ReadConfigAs<uint32_t>(*this, offset);
}
Result<void> Device::WriteConfig16(uint32_t offset, uint16_t value) const {
  return WriteConfigAs<uint16_t>(*this, offset, value);
}
Result<void> Device::WriteConfig32(uint32_t offset, uint32_t value) const {
  return WriteConfigAs<uint32_t>(*this, offset, value);
}

Result<void> Device::SetBusMaster(bool enable) const {
  uint16_t cmd = VFIOD_TRY(ReadConfig16(kPciCommandOffset));
  uint16_t bits = kPciCommandBusMaster | kPciCommandMemory;
  uint16_t next = enable ? (cmd | bits) : static_cast<uint16_t>(cmd & ~kPciCommandBusMaster);
  if (next == cmd) {
    return Ok();
  }
  return WriteConfig16(kPciCommandOffset, next);
}

Result<void> Device::Reset() const {
  if (!info_.can_reset()) {
    return Fail(ENOTTY, "VFIO_DEVICE_RESET", name_ + " does not support reset");
  }
  return kernel::ResetDevice(*kernel_, fd());
}

}  // namespace vfiod::vfio
