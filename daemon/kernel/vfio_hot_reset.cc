// VFIO_DEVICE_GET_PCI_HOT_RESET_INFO and VFIO_DEVICE_PCI_HOT_RESET: the
// secondary bus (or slot) reset that needs the fds of every group it affects.
#include <linux/vfio.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <vector>

#include "kernel/vfio_api.h"

namespace vfiod::kernel {
namespace {

/// The hot reset requests share their numbers with VFIO_IOMMU_GET_INFO and
/// VFIO_IOMMU_MAP_DMA (VFIO numbers its ioctls per fd type), so the seam's
/// name for them is the IOMMU one: name the failure here.
template <class T>
Result<T> Named(Result<T> r, const char* op) {
  if (!r) {
    r.error().op = op;
  }
  return r;
}

/// Bounds what vfiod accepts from (and sends to) the kernel: a bus holds at
/// most 256 functions.
constexpr uint32_t kMaxHotResetDevices = 256;

std::string BdfOf(const vfio_pci_dependent_device& d) {
  char buf[16];
  (void)std::snprintf(buf, sizeof buf, "%04x:%02x:%02x.%x", d.segment, d.bus, (d.devfn >> 3) & 0x1f,
                      d.devfn & 0x7);
  return buf;
}

}  // namespace

Result<std::vector<HotResetDevice>> GetHotResetInfo(Kernel& k, int device) {
  constexpr const char* kOp = "VFIO_DEVICE_GET_PCI_HOT_RESET_INFO";
  vfio_pci_hot_reset_info hdr{};
  hdr.argsz = sizeof hdr;
  // The kernel answers ENOSPC with the count filled in when the array is too small.
  Result<int> probe = Named(k.ioctl(device, VFIO_DEVICE_GET_PCI_HOT_RESET_INFO, &hdr), kOp);
  if (probe) {
    return Fail(EPROTO, kOp, "the kernel reported no affected device");
  }
  if (probe.error().code != ENOSPC) {
    return std::unexpected(probe.error());
  }
  if (hdr.count == 0 || hdr.count > kMaxHotResetDevices) {
    return Fail(EPROTO, kOp, "implausible device count " + std::to_string(hdr.count));
  }
  const uint32_t count = hdr.count;
  std::vector<std::byte> buf(sizeof hdr + count * sizeof(vfio_pci_dependent_device));
  hdr = {};
  hdr.argsz = static_cast<uint32_t>(buf.size());
  std::memcpy(buf.data(), &hdr, sizeof hdr);
  VFIOD_TRY(Named(k.ioctl(device, VFIO_DEVICE_GET_PCI_HOT_RESET_INFO, buf.data()), kOp));
  std::memcpy(&hdr, buf.data(), sizeof hdr);
  if (hdr.count == 0 || hdr.count > count) {
    return Fail(EPROTO, kOp, "the device count changed between the two queries");
  }
  std::vector<HotResetDevice> out;
  out.reserve(hdr.count);
  for (uint32_t i = 0; i < hdr.count; ++i) {
    vfio_pci_dependent_device d{};
    std::memcpy(&d, buf.data() + sizeof hdr + i * sizeof d, sizeof d);
    out.push_back(HotResetDevice{d.group_id, BdfOf(d)});
  }
  return out;
}

Result<void> HotReset(Kernel& k, int device, std::span<const int> group_fds) {
  constexpr const char* kOp = "VFIO_DEVICE_PCI_HOT_RESET";
  if (group_fds.empty() || group_fds.size() > kMaxHotResetDevices) {
    return Fail(EINVAL, kOp, "needs 1 to 256 group fds");
  }
  std::vector<std::byte> buf(sizeof(vfio_pci_hot_reset) + group_fds.size() * sizeof(int32_t));
  vfio_pci_hot_reset hdr{};
  hdr.argsz = static_cast<uint32_t>(buf.size());
  hdr.count = static_cast<uint32_t>(group_fds.size());
  std::memcpy(buf.data(), &hdr, sizeof hdr);
  for (size_t i = 0; i < group_fds.size(); ++i) {
    int32_t fd = group_fds[i];
    std::memcpy(buf.data() + sizeof hdr + i * sizeof fd, &fd, sizeof fd);
  }
  VFIOD_TRY(Named(k.ioctl(device, VFIO_DEVICE_PCI_HOT_RESET, buf.data()), kOp));
  return Ok();
}

}  // namespace vfiod::kernel
