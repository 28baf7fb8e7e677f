#include "edu_regs.h"

#include <linux/vfio.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstring>
#include <utility>
#include <vector>

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

namespace {

Result<vfio_region_info> RegionInfo(int fd, uint32_t index) {
  vfio_region_info info{};
  info.argsz = sizeof(info);
  info.index = index;
  if (::ioctl(fd, VFIO_DEVICE_GET_REGION_INFO, &info) < 0) {
    return ErrnoError("VFIO_DEVICE_GET_REGION_INFO " + std::to_string(index));
  }
  return info;
}

}  // namespace

Result<EduDevice> EduDevice::Open(UniqueFd device_fd) {
  vfio_region_info bar0 = VFIOD_TRY(RegionInfo(device_fd.get(), VFIO_PCI_BAR0_REGION_INDEX));
  if (bar0.size == 0 || (bar0.flags & VFIO_REGION_INFO_FLAG_MMAP) == 0) {
    return Fail(ENODEV, "BAR0", "missing or not mmap-able");
  }
  vfio_region_info config = VFIOD_TRY(RegionInfo(device_fd.get(), VFIO_PCI_CONFIG_REGION_INDEX));
  MappedMemory regs = VFIOD_TRY(MappedMemory::Map(device_fd.get(), bar0.size, bar0.offset));
  EduDevice edu(std::move(device_fd), std::move(regs), config.offset);
  if ((edu.Ident() & 0xff) != 0xed) {
    return Fail(ENODEV, "edu ident", "BAR0 does not answer like edu");
  }
  return edu;
}

EduDevice::~EduDevice() { DisableMsi(); }

uint32_t EduDevice::Read32(uint32_t reg) const {
  return *reinterpret_cast<volatile uint32_t*>(bar0_.data() + reg);
}

void EduDevice::Write32(uint32_t reg, uint32_t value) const {
  *reinterpret_cast<volatile uint32_t*>(bar0_.data() + reg) = value;
}

void EduDevice::Write64(uint32_t reg, uint64_t value) const {
  *reinterpret_cast<volatile uint64_t*>(bar0_.data() + reg) = value;
}

uint32_t EduDevice::Liveness(uint32_t value) const {
  Write32(kLiveness, value);
  return Read32(kLiveness);
}

Result<void> EduDevice::EnableBusMaster() {
  constexpr uint64_t kCommand = 4;
  constexpr uint16_t kBusMaster = 1u << 2;
  uint16_t command = 0;
  off_t at = static_cast<off_t>(config_offset_ + kCommand);
  if (::pread(fd_.get(), &command, sizeof(command), at) != sizeof(command)) {
    return ErrnoError("pread PCI command");
  }
  command |= kBusMaster;
  if (::pwrite(fd_.get(), &command, sizeof(command), at) != sizeof(command)) {
    return ErrnoError("pwrite PCI command");
  }
  return Ok();
}

Result<void> EduDevice::EnableMsi() {
  vfio_irq_info irq{};
  irq.argsz = sizeof(irq);
  irq.index = VFIO_PCI_MSI_IRQ_INDEX;
  if (::ioctl(fd_.get(), VFIO_DEVICE_GET_IRQ_INFO, &irq) < 0) {
    return ErrnoError("VFIO_DEVICE_GET_IRQ_INFO MSI");
  }
  if (irq.count < 1 || (irq.flags & VFIO_IRQ_INFO_EVENTFD) == 0) {
    return Fail(ENOTSUP, "MSI", "the device offers no MSI vector with eventfd signalling");
  }
  UniqueFd event(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!event) {
    return ErrnoError("eventfd");
  }
  std::vector<uint8_t> buf(sizeof(vfio_irq_set) + sizeof(int32_t));
  auto* set = reinterpret_cast<vfio_irq_set*>(buf.data());
  set->argsz = static_cast<uint32_t>(buf.size());
  set->flags = VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER;
  set->index = VFIO_PCI_MSI_IRQ_INDEX;
  set->start = 0;
  set->count = 1;
  int32_t efd = event.get();
  std::memcpy(set->data, &efd, sizeof(efd));
  if (::ioctl(fd_.get(), VFIO_DEVICE_SET_IRQS, set) < 0) {
    return ErrnoError("VFIO_DEVICE_SET_IRQS MSI");
  }
  msi_eventfd_ = std::move(event);
  return Ok();
}

void EduDevice::DisableMsi() {
  if (!fd_ || !msi_eventfd_) {
    return;
  }
  vfio_irq_set set{};
  set.argsz = sizeof(set);
  set.flags = VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER;
  set.index = VFIO_PCI_MSI_IRQ_INDEX;
  set.start = 0;
  set.count = 0;  // count 0 with DATA_NONE: disable the index
  (void)::ioctl(fd_.get(), VFIO_DEVICE_SET_IRQS, &set);
  msi_eventfd_.reset();
}

Result<void> EduDevice::WaitForMsi(std::chrono::milliseconds timeout) {
  pollfd p{msi_eventfd_.get(), POLLIN, 0};
  int ready = 0;
  do {
    ready = ::poll(&p, 1, static_cast<int>(timeout.count()));
  } while (ready < 0 && errno == EINTR);
  if (ready < 0) {
    return ErrnoError("poll eventfd");
  }
  if (ready == 0) {
    return Fail(ETIMEDOUT, "edu DMA", "no MSI within the timeout");
  }
  uint64_t count = 0;
  if (::read(msi_eventfd_.get(), &count, sizeof(count)) != sizeof(count)) {
    return ErrnoError("read eventfd");
  }
  interrupts_ += count;
  return Ok();
}

Result<void> EduDevice::Dma(Direction dir, uint64_t iova, uint32_t len,
                            std::chrono::milliseconds timeout) {
  constexpr uint32_t kStart = 1, kFromDevice = 2, kIrq = 4;
  constexpr uint32_t kDmaDoneIrq = 0x100;
  if (len == 0 || len > kEduMaxTransfer) {
    return Fail(EINVAL, "edu DMA", "length must be 1.." + std::to_string(kEduMaxTransfer));
  }
  if (!msi_eventfd_) {
    return Fail(EINVAL, "edu DMA", "MSI is not enabled");
  }
  const bool to_device = dir == Direction::kToDevice;
  Write64(kDmaSrc, to_device ? iova : kEduBuffer);
  Write64(kDmaDst, to_device ? kEduBuffer : iova);
  Write64(kDmaCount, len);
  Write32(kDmaCmd, kStart | kIrq | (to_device ? 0 : kFromDevice));
  VFIOD_TRY(WaitForMsi(timeout));
  uint32_t status = Read32(kIrqStatus);
  Write32(kIrqAck, status);
  if ((Read32(kDmaCmd) & kStart) != 0) {
    return Fail(EIO, "edu DMA", "interrupt received but the DMA is still busy");
  }
  if ((status & kDmaDoneIrq) == 0) {
    return Fail(EIO, "edu DMA", "interrupt status lacks the DMA-done bit");
  }
  return Ok();
}

}  // namespace vfiod::examples
