#include "support/edu.h"

#include <thread>

namespace vfiod::testing {
namespace {
constexpr uint32_t kEduIdentLow = 0xed;  // ident reads 0xMMmm00ed (major/minor version)
constexpr uint32_t kCmdStart = 0x1;
constexpr uint32_t kCmdFromDevice = 0x2;
constexpr uint32_t kCmdIrq = 0x4;
constexpr uint32_t kBar0Size = 1u << 20;
}  // namespace

Result<void> CheckEduTransfer(uint64_t iova, uint32_t device_offset, uint32_t len) {
  if (len == 0) {
    return Fail(EINVAL, "edu DMA", "empty transfer");
  }
  if (device_offset >= kEduBufferSize || len > kEduMaxTransfer - device_offset) {
    return Fail(EINVAL, "edu DMA",
                "the transfer must end before byte 4095 of the device buffer (QEMU quirk)");
  }
  if (iova >= kEduDmaLimit || len > kEduDmaLimit - iova) {
    return Fail(EINVAL, "edu DMA",
                "edu's DMA mask is 28 bits: the IOVA range must end below 256 MiB");
  }
  return Ok();
}

Result<EduDevice> EduDevice::Open(std::shared_ptr<vfio::Device> device) {
  vfio::RegionMapping bar0 =
      VFIOD_TRY(vfio::RegionMapping::Map(device, kernel::kPciBar0RegionIndex));
  if (bar0.size() < kBar0Size || !bar0.Accessible(0, kBar0Size)) {
    return Fail(ENODEV, "open edu", "BAR0 of " + device->name() + " is not 1 MiB of MMIO");
  }
  EduDevice edu(std::move(device), std::move(bar0));
  if ((edu.Ident() & 0xff) != kEduIdentLow) {
    return Fail(ENODEV, "open edu", "ident register reads " + std::to_string(edu.Ident()));
  }
  if (edu.Liveness(0x12345678) != ~0x12345678u) {
    return Fail(ENODEV, "open edu", "liveness register does not invert");
  }
  VFIOD_TRY(edu.device_->SetBusMaster(true));
  return edu;
}

uint32_t EduDevice::Read32(uint32_t reg) const {
  return *reinterpret_cast<volatile const uint32_t*>(bar0_.data() + reg);
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

Result<void> EduDevice::EnableMsi() {
  if (!msi_) {
    msi_ = VFIOD_TRY(vfio::IrqSet::Enable(device_, kernel::kPciMsiIrqIndex, 1));
  }
  return Ok();
}

void EduDevice::AckIrqs() const {
  uint32_t status = Read32(kIrqStatus);
  if (status != 0) {
    Write32(kIrqAck, status);
  }
}

Result<void> EduDevice::PollDone(std::chrono::milliseconds timeout) const {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while ((Read32(kDmaCmd) & kCmdStart) != 0) {
    if (std::chrono::steady_clock::now() >= deadline) {
      return Fail(ETIMEDOUT, "edu DMA",
                  "still busy after " + std::to_string(timeout.count()) + " ms");
    }
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  return Ok();
}

Result<void> EduDevice::Dma(EduDirection dir, uint64_t iova, uint32_t device_offset, uint32_t len,
                            EduCompletion completion, std::chrono::milliseconds timeout) {
  VFIOD_TRY(CheckEduTransfer(iova, device_offset, len));
  bool use_msi = completion == EduCompletion::kMsi;
  if (use_msi && !msi_) {
    return Fail(EINVAL, "edu DMA", "MSI completion needs EnableMsi() first");
  }
  VFIOD_TRY(PollDone(timeout));  // never reprogram a busy engine
  uint64_t dev_addr = kEduBufferAddr + device_offset;
  bool to_device = dir == EduDirection::kToDevice;
  Write64(kDmaSrc, to_device ? iova : dev_addr);
  Write64(kDmaDst, to_device ? dev_addr : iova);
  Write64(kDmaCount, len);
  if (use_msi) {
    (void)msi_->TryConsume(0);  // drop a stale signal; EAGAIN when there is none
  }
  Write32(kDmaCmd, kCmdStart | (to_device ? 0 : kCmdFromDevice) | (use_msi ? kCmdIrq : 0));
  if (!use_msi) {
    return PollDone(timeout);
  }
  auto fired = msi_->Wait(0, timeout);
  AckIrqs();
  if (!fired) {
    Error e = fired.error();
    e.op = "edu DMA completion interrupt";
    return std::unexpected(std::move(e));
  }
  // The interrupt is raised when the transfer is done; the busy bit agrees.
  return PollDone(timeout);
}

}  // namespace vfiod::testing
