#include "device_io.h"

#include <linux/vfio.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <string>
#include <utility>

namespace vfiod::examples {

MappedMemory::MappedMemory(MappedMemory&& other) noexcept
    : addr_(std::exchange(other.addr_, nullptr)), size_(std::exchange(other.size_, 0)) {}

MappedMemory& MappedMemory::operator=(MappedMemory&& other) noexcept {
  if (this != &other) {
    if (addr_ != nullptr) {
      ::munmap(addr_, size_);
    }
    addr_ = std::exchange(other.addr_, nullptr);
    size_ = std::exchange(other.size_, 0);
  }
  return *this;
}

MappedMemory::~MappedMemory() {
  if (addr_ != nullptr) {
    ::munmap(addr_, size_);
  }
}

Result<MappedMemory> MappedMemory::Map(int fd, size_t size, uint64_t offset) {
  void* addr =
      ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, static_cast<off_t>(offset));
  if (addr == MAP_FAILED) {
    return ErrnoError("mmap");
  }
  return MappedMemory(addr, size);
}

Result<Region> GetRegion(int device_fd, uint32_t index) {
  vfio_region_info info{};
  info.argsz = sizeof(info);
  info.index = index;
  if (::ioctl(device_fd, VFIO_DEVICE_GET_REGION_INFO, &info) < 0) {
    return ErrnoError("VFIO_DEVICE_GET_REGION_INFO " + std::to_string(index));
  }
  return Region{info.offset, info.size, (info.flags & VFIO_REGION_INFO_FLAG_MMAP) != 0};
}

Result<void> SetPciCommandBits(int device_fd, uint64_t config_offset, uint16_t bits) {
  constexpr uint64_t kCommand = 4;
  uint16_t command = 0;
  const auto at = static_cast<off_t>(config_offset + kCommand);
  const ssize_t got = ::pread(device_fd, &command, sizeof(command), at);
  if (got != sizeof(command)) {
    return ErrnoError("pread PCI command", got < 0 ? errno : EIO);
  }
  command |= bits;
  const ssize_t put = ::pwrite(device_fd, &command, sizeof(command), at);
  if (put != sizeof(command)) {
    return ErrnoError("pwrite PCI command", put < 0 ? errno : EIO);
  }
  return Ok();
}

}  // namespace vfiod::examples
