#include "nvme_regs.h"

#include <linux/vfio.h>
#include <unistd.h>

#include <string>
#include <thread>
#include <utility>

#include "device_io.h"

namespace vfiod::examples {

Result<NvmeController> NvmeController::Open(UniqueFd device_fd) {
  Region bar0 = VFIOD_TRY(GetRegion(device_fd.get(), VFIO_PCI_BAR0_REGION_INDEX));
  if (bar0.size < kDoorbells + 8) {
    return Fail(ENODEV, "NVMe BAR0", "missing or too small for the admin doorbells");
  }
  Region config = VFIOD_TRY(GetRegion(device_fd.get(), VFIO_PCI_CONFIG_REGION_INDEX));
  return NvmeController(std::move(device_fd), bar0.offset, config.offset);
}

Result<uint32_t> NvmeController::Read32(uint32_t reg) const {
  uint32_t value = 0;
  const ssize_t got = ::pread(fd_.get(), &value, sizeof(value), static_cast<off_t>(bar0_ + reg));
  if (got != sizeof(value)) {
    return ErrnoError("NVMe register read at " + std::to_string(reg), got < 0 ? errno : EIO);
  }
  return value;
}

Result<void> NvmeController::Write32(uint32_t reg, uint32_t value) const {
  const ssize_t put = ::pwrite(fd_.get(), &value, sizeof(value), static_cast<off_t>(bar0_ + reg));
  if (put != sizeof(value)) {
    return ErrnoError("NVMe register write at " + std::to_string(reg), put < 0 ? errno : EIO);
  }
  return Ok();
}

// Two 32-bit halves, low first: what the controller accepts for ASQ / ACQ.
Result<void> NvmeController::Write64(uint32_t reg, uint64_t value) const {
  VFIOD_TRY(Write32(reg, static_cast<uint32_t>(value)));
  return Write32(reg + 4, static_cast<uint32_t>(value >> 32));
}

Result<uint16_t> NvmeController::VendorId() const {
  uint16_t vendor = 0;
  if (::pread(fd_.get(), &vendor, sizeof(vendor), static_cast<off_t>(config_)) != sizeof(vendor)) {
    return ErrnoError("pread PCI vendor id");
  }
  return vendor;
}

Result<void> NvmeController::EnableBusMaster() {
  return SetPciCommandBits(fd_.get(), config_, kPciMemorySpace | kPciBusMaster);
}

Result<void> NvmeController::WaitReady(bool ready, std::chrono::milliseconds timeout) const {
  constexpr uint32_t kRdy = 1, kCfs = 2;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    const uint32_t csts = VFIOD_TRY(Read32(kCsts));
    if (csts == UINT32_MAX) {
      return Fail(EIO, "NVMe CSTS", "reads all ones: the controller does not answer");
    }
    if ((csts & kCfs) != 0) {
      return Fail(EIO, "NVMe CSTS", "the controller reports a fatal status");
    }
    if (((csts & kRdy) != 0) == ready) {
      return Ok();
    }
    if (std::chrono::steady_clock::now() >= deadline) {
      return Fail(ETIMEDOUT, "NVMe CSTS", ready ? "not ready in time" : "still ready");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

Result<void> NvmeController::Disable(std::chrono::milliseconds timeout) {
  const uint32_t cc = VFIOD_TRY(Read32(kCc));
  VFIOD_TRY(Write32(kCc, cc & ~1u));
  return WaitReady(false, timeout);
}

Result<void> NvmeController::Enable(uint64_t asq, uint64_t acq, std::chrono::milliseconds timeout) {
  constexpr uint32_t kEntries = 2;  // the smallest queue: one command in flight
  constexpr uint32_t kCcEnable = 1u | (6u << 16) | (4u << 20);  // EN, IOSQES 64 B, IOCQES 16 B
  if ((asq | acq) % 4096 != 0) {
    return Fail(EINVAL, "NVMe admin queues", "IOVAs must be 4 KiB aligned");
  }
  const uint32_t cap_hi = VFIOD_TRY(Read32(kCap + 4));
  stride_ = 4u << (cap_hi & 0xf);
  VFIOD_TRY(Disable(timeout));
  VFIOD_TRY(Write32(kAqa, ((kEntries - 1) << 16) | (kEntries - 1)));
  VFIOD_TRY(Write64(kAsq, asq));
  VFIOD_TRY(Write64(kAcq, acq));
  VFIOD_TRY(Write32(kCc, kCcEnable));
  return WaitReady(true, timeout);
}

Result<void> NvmeController::EnableIrq(client::IrqIndex index) {
  VFIOD_TRY(irq_.Disable());
  irq_ = VFIOD_TRY(client::IrqSet::Enable(fd_.get(), index));
  return Ok();
}

Result<void> NvmeController::Submit() {
  // The pwrite is a system call: the entry written to memory before it is
  // visible to the device when the doorbell rings.
  return Write32(kDoorbells, 1);  // admin SQ tail: past slot 0
}

Result<void> NvmeController::Complete() {
  VFIOD_TRY(Write32(kDoorbells + stride_, 1));  // admin CQ head: past slot 0
  return irq_.Unmask(0);
}

}  // namespace vfiod::examples
