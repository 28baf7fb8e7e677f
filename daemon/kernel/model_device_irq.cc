// ModelPciFunction: VFIO_DEVICE_SET_IRQS and interrupt delivery, after
// vfio_set_irqs_validate_and_prepare() and vfio_pci_intrs.c of Linux 6.1.
#include <fcntl.h>
#include <linux/vfio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string>

#include "kernel/model_device.h"

namespace vfiod::kernel {
namespace {

constexpr const char* kOp = "VFIO_DEVICE_SET_IRQS";

Result<UniqueFd> TakeEventfd(int fd) {
  char target[64] = {};
  std::string link = "/proc/self/fd/" + std::to_string(fd);
  ssize_t n = ::readlink(link.c_str(), target, sizeof target - 1);
  if (fd < 0 || n < 0) {
    return Fail(EBADF, kOp, "not an open fd");
  }
  if (std::string_view(target, static_cast<size_t>(n)) != "anon_inode:[eventfd]") {
    return Fail(EINVAL, kOp, "fd is not an eventfd");
  }
  int dup = ::fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (dup < 0) {
    return ErrnoError(kOp);
  }
  return UniqueFd(dup);
}

bool Signal(const UniqueFd& fd) {
  if (!fd) {
    return false;
  }
  uint64_t one = 1;
  return ::write(fd.get(), &one, sizeof one) == static_cast<ssize_t>(sizeof one);
}

}  // namespace

Result<int> ModelPciFunction::SetIrqs(void* arg) {
  constexpr size_t kMinsz = sizeof(vfio_irq_set);  // offsetofend(count)
  vfio_irq_set hdr{};
  std::memcpy(&hdr, arg, kMinsz);
  constexpr uint32_t kKnown = VFIO_IRQ_SET_DATA_TYPE_MASK | VFIO_IRQ_SET_ACTION_TYPE_MASK;
  if (hdr.argsz < kMinsz || hdr.index >= kPciNumIrqs || hdr.count >= UINT32_MAX - hdr.start ||
      (hdr.flags & ~kKnown) != 0) {
    return Fail(EINVAL, kOp, "bad argsz, index, range or flags");
  }
  uint32_t num = IrqCount(hdr.index);
  if (hdr.start >= num || hdr.start + hdr.count > num) {
    return Fail(EINVAL, kOp, "vectors out of range");
  }
  size_t elem = 0;
  switch (hdr.flags & VFIO_IRQ_SET_DATA_TYPE_MASK) {
    case VFIO_IRQ_SET_DATA_NONE:
      break;
    case VFIO_IRQ_SET_DATA_BOOL:
      elem = sizeof(uint8_t);
      break;
    case VFIO_IRQ_SET_DATA_EVENTFD:
      elem = sizeof(int32_t);
      break;
    default:
      return Fail(EINVAL, kOp, "exactly one data type needed");
  }
  std::vector<uint8_t> data;
  if (elem != 0) {
    if (hdr.argsz - kMinsz < hdr.count * elem) {
      return Fail(EINVAL, kOp, "argsz too small for the data");
    }
    data.resize(hdr.count * elem);
    if (!data.empty()) {  // count 0 (refused below for some indexes): nothing to copy
      std::memcpy(data.data(), static_cast<const std::byte*>(arg) + kMinsz, data.size());
    }
  }
  uint32_t action = hdr.flags & VFIO_IRQ_SET_ACTION_TYPE_MASK;
  uint32_t dtype = hdr.flags & VFIO_IRQ_SET_DATA_TYPE_MASK;
  if (action == VFIO_IRQ_SET_ACTION_TRIGGER) {
    std::vector<int32_t> fds(dtype == VFIO_IRQ_SET_DATA_EVENTFD ? hdr.count : 0);
    if (!fds.empty()) {
      std::memcpy(fds.data(), data.data(), data.size());
    }
    if (dtype != VFIO_IRQ_SET_DATA_BOOL) {
      data.assign(hdr.count, 1);  // DATA_NONE fires every vector named
    }
    return SetTrigger(hdr.index, dtype, hdr.start, hdr.count, fds.data(), data.data());
  }
  if (action == VFIO_IRQ_SET_ACTION_MASK || action == VFIO_IRQ_SET_ACTION_UNMASK) {
    if (hdr.index != VFIO_PCI_INTX_IRQ_INDEX) {
      return Fail(ENOTTY, kOp, "only INTx can be masked");  // MSI masking is not exported
    }
    if (dtype == VFIO_IRQ_SET_DATA_BOOL && (hdr.count == 0 || data[0] == 0)) {
      return 0;  // a false bool does nothing
    }
    return SetMask(hdr.index, action, dtype);
  }
  return Fail(ENOTTY, kOp, "exactly one action needed");
}

Result<int> ModelPciFunction::SetMask(uint32_t index, uint32_t action, uint32_t dtype) {
  if (index != VFIO_PCI_INTX_IRQ_INDEX) {
    return Fail(ENOTTY, kOp, "only INTx can be masked");  // MSI masking is not exported
  }
  if (irqs_.active != static_cast<int>(VFIO_PCI_INTX_IRQ_INDEX) ||
      dtype == VFIO_IRQ_SET_DATA_EVENTFD) {
    return Fail(EINVAL, kOp, "INTx not enabled, or irqfd unmask (not modelled)");
  }
  irqs_.intx_masked = action == VFIO_IRQ_SET_ACTION_MASK;
  return 0;
}

Result<int> ModelPciFunction::SetSingleTrigger(UniqueFd& slot, uint32_t dtype, uint32_t count,
                                               const int32_t* fds, const uint8_t* bools) {
  if (dtype == VFIO_IRQ_SET_DATA_NONE) {
    if (!slot) {
      return Fail(EINVAL, kOp, "no trigger set: nothing to signal or unset");
    }
    count == 0 ? slot.reset() : (void)Signal(slot);
    return 0;
  }
  if (count == 0) {
    return Fail(EINVAL, kOp, "a bool or an eventfd needs count 1");
  }
  if (dtype == VFIO_IRQ_SET_DATA_BOOL) {
    if (bools[0] != 0) {
      Signal(slot);
    }
    return 0;
  }
  if (fds[0] == -1) {
    slot.reset();
  } else if (fds[0] >= 0) {
    slot = VFIOD_TRY(TakeEventfd(fds[0]));
  }  // other negative fds: ignored, as vfio-pci does
  return 0;
}

bool ModelPciFunction::Request() {
  return Signal(irqs_.err_req[VFIO_PCI_REQ_IRQ_INDEX - VFIO_PCI_ERR_IRQ_INDEX]);
}

Result<int> ModelPciFunction::SetTrigger(uint32_t index, uint32_t dtype, uint32_t start,
                                         uint32_t count, const int32_t* fds, const uint8_t* bools) {
  if (index == VFIO_PCI_ERR_IRQ_INDEX || index == VFIO_PCI_REQ_IRQ_INDEX) {
    return SetSingleTrigger(irqs_.err_req[index - VFIO_PCI_ERR_IRQ_INDEX], dtype, count, fds,
                            bools);
  }
  bool active = irqs_.active == static_cast<int>(index);
  if (active && count == 0 && dtype == VFIO_IRQ_SET_DATA_NONE) {
    DisableIrqs();
    return 0;
  }
  if (!active && irqs_.active != -1) {
    return Fail(EINVAL, kOp, "another interrupt type is enabled");
  }
  if (dtype == VFIO_IRQ_SET_DATA_EVENTFD) {
    bool intx = index == VFIO_PCI_INTX_IRQ_INDEX;
    if (intx && (start != 0 || count != 1)) {
      return Fail(EINVAL, kOp, "INTx has exactly one vector");
    }
    if (intx && fds[0] < 0) {
      DisableIrqs();
      return 0;
    }
    if (!active) {  // enable with start + count vectors
      irqs_.vectors.clear();
      irqs_.vectors.resize(start + count);
    } else if (start + count > irqs_.vectors.size()) {
      return Fail(EINVAL, kOp, "vectors beyond those enabled");
    }
    std::vector<UniqueFd> taken(count);
    for (uint32_t i = 0; i < count; ++i) {
      if (fds[i] >= 0) {
        auto fd = TakeEventfd(fds[i]);
        if (!fd) {
          if (!active) {
            irqs_.vectors.clear();
          }
          return std::unexpected(fd.error());
        }
        taken[i] = std::move(*fd);
      }
    }
    for (uint32_t i = 0; i < count; ++i) {
      irqs_.vectors[start + i] = std::move(taken[i]);
    }
    irqs_.active = static_cast<int>(index);
    return 0;
  }
  if (!active) {
    return Fail(EINVAL, kOp, "interrupt type not enabled");
  }
  for (uint32_t i = 0; i < count; ++i) {  // loopback trigger from user space
    if (bools[i] != 0 && start + i < irqs_.vectors.size()) {
      Signal(irqs_.vectors[start + i]);
    }
  }
  return 0;
}

Result<bool> ModelPciFunction::TriggerIrq(uint32_t index, uint32_t vector) {
  if (index >= kPciNumIrqs || vector >= IrqCount(index)) {
    return Fail(EINVAL, "TriggerIrq", "no such vector");
  }
  if (index == VFIO_PCI_ERR_IRQ_INDEX || index == VFIO_PCI_REQ_IRQ_INDEX) {
    return Signal(irqs_.err_req[index - VFIO_PCI_ERR_IRQ_INDEX]);
  }
  if (irqs_.active != static_cast<int>(index) || vector >= irqs_.vectors.size()) {
    return false;
  }
  if (index == VFIO_PCI_INTX_IRQ_INDEX) {
    if (irqs_.intx_masked) {
      return false;
    }
    irqs_.intx_masked = true;  // automasked until the user unmasks
  }
  return Signal(irqs_.vectors[vector]);
}

}  // namespace vfiod::kernel
