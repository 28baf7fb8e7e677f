#include "edu_regs.h"

#include <linux/vfio.h>
#include <unistd.h>

#include <string>
#include <utility>

namespace vfiod::examples {

Result<EduDevice> EduDevice::Open(UniqueFd device_fd) {
  Region bar0 = VFIOD_TRY(GetRegion(device_fd.get(), VFIO_PCI_BAR0_REGION_INDEX));
  if (bar0.size == 0 || !bar0.mmap) {
    return Fail(ENODEV, "BAR0", "missing or not mmap-able");
  }
  Region config = VFIOD_TRY(GetRegion(device_fd.get(), VFIO_PCI_CONFIG_REGION_INDEX));
  MappedMemory regs = VFIOD_TRY(MappedMemory::Map(device_fd.get(), bar0.size, bar0.offset));
  EduDevice edu(std::move(device_fd), std::move(regs), config.offset);
  if ((edu.Ident() & 0xff) != 0xed) {
    return Fail(ENODEV, "edu ident", "BAR0 does not answer like edu");
  }
  return edu;
}

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
  return SetPciCommandBits(fd_.get(), config_offset_, kPciBusMaster);
}

Result<void> EduDevice::EnableIrq(client::IrqIndex index) {
  VFIOD_TRY(irq_.Disable());
  irq_ = VFIOD_TRY(client::IrqSet::Enable(fd_.get(), index));
  return Ok();
}

Result<void> EduDevice::AwaitDmaIrq(std::chrono::milliseconds timeout) {
  constexpr uint32_t kStart = 1;
  constexpr uint32_t kDmaDoneIrq = 0x100;
  interrupts_ += VFIOD_TRY(irq_.Wait(0, timeout));
  const uint32_t status = Read32(kIrqStatus);
  Write32(kIrqAck, status);  // lowers INTx: only then may it be unmasked
  VFIOD_TRY(irq_.Unmask(0));
  if ((Read32(kDmaCmd) & kStart) != 0) {
    return Fail(EIO, "edu DMA", "interrupt received but the DMA is still busy");
  }
  if ((status & kDmaDoneIrq) == 0) {
    return Fail(EIO, "edu DMA", "interrupt status lacks the DMA-done bit");
  }
  return Ok();
}

Result<void> EduDevice::Dma(Direction dir, uint64_t iova, uint32_t len,
                            std::chrono::milliseconds timeout) {
  constexpr uint32_t kStart = 1, kFromDevice = 2, kIrq = 4;
  if (len == 0 || len > kEduMaxTransfer) {
    return Fail(EINVAL, "edu DMA", "length must be 1.." + std::to_string(kEduMaxTransfer));
  }
  if (!irq_.enabled()) {
    return Fail(EINVAL, "edu DMA", "no interrupt is enabled");
  }
  auto early = irq_.TryConsume(0);
  if (early) {
    return Fail(EIO, "edu DMA", std::to_string(*early) + " interrupt(s) before the DMA started");
  }
  if (early.error().code != EAGAIN) {
    return std::unexpected(early.error());
  }
  const bool to_device = dir == Direction::kToDevice;
  Write64(kDmaSrc, to_device ? iova : kEduBuffer);
  Write64(kDmaDst, to_device ? kEduBuffer : iova);
  Write64(kDmaCount, len);
  Write32(kDmaCmd, kStart | kIrq | (to_device ? 0 : kFromDevice));
  return AwaitDmaIrq(timeout);
}

}  // namespace vfiod::examples
