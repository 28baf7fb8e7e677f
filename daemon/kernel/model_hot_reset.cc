// ModelKernel: the PCI hot reset ioctls of a device fd (Linux 6.1
// vfio_pci_core.c: vfio_pci_ioctl_get_pci_hot_reset_info,
// vfio_pci_ioctl_pci_hot_reset and vfio_pci_dev_set_hot_reset).
#include <fcntl.h>
#include <linux/vfio.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <vector>

#include "kernel/model_state.h"

namespace vfiod::kernel {
namespace {

/// A function on the bus a hot reset resets, with its group.
struct Affected {
  const ModelGroupState* group = nullptr;
  const ModelMember* member = nullptr;
};

/// Every function on `d`'s reset bus, in topology order (empty: the device
/// is on the root bus, which cannot be reset).
std::vector<Affected> AffectedBy(const ModelState& s, const ModelDeviceFd& d) {
  std::vector<Affected> out;
  const std::string& bus = d.function->topo().reset_bus;
  if (bus.empty()) {
    return out;
  }
  for (const auto& g : s.groups) {
    for (const ModelMember& m : g->members) {
      if (m.function->topo().reset_bus == bus) {
        out.push_back(Affected{g.get(), &m});
      }
    }
  }
  return out;
}

vfio_pci_dependent_device Dependent(const Affected& a) {
  vfio_pci_dependent_device out{};
  out.group_id = static_cast<uint32_t>(a.group->topo->id);
  unsigned seg = 0;
  unsigned bus = 0;
  unsigned dev = 0;
  unsigned fn = 0;
  // NOLINTNEXTLINE(cert-err34-c): the topology's BDFs are well formed; a bad one reads as 0
  if (std::sscanf(a.member->function->topo().bdf.c_str(), "%x:%x:%x.%x", &seg, &bus, &dev, &fn) !=
      4) {
    return out;
  }
  out.segment = static_cast<uint16_t>(seg);
  out.bus = static_cast<uint8_t>(bus);
  out.devfn = static_cast<uint8_t>((dev << 3) | (fn & 7));
  return out;
}

/// The groups behind the user's fds: EBADF for an fd that is not open,
/// EINVAL for one that is not a VFIO group.
Result<std::vector<const ModelGroupState*>> GroupsOf(const ModelState& s, const int32_t* fds,
                                                     uint32_t count) {
  std::vector<const ModelGroupState*> out;
  for (uint32_t i = 0; i < count; ++i) {
    auto it = s.fds.find(fds[i]);
    if (it == s.fds.end()) {
      if (::fcntl(fds[i], F_GETFD) < 0) {
        return Fail(EBADF, "VFIO_DEVICE_PCI_HOT_RESET", "not an open fd");
      }
      return Fail(EINVAL, "VFIO_DEVICE_PCI_HOT_RESET", "fd is not a VFIO group");
    }
    auto* const* g = std::get_if<ModelGroupState*>(&it->second);
    if (g == nullptr) {
      return Fail(EINVAL, "VFIO_DEVICE_PCI_HOT_RESET", "fd is not a VFIO group");
    }
    out.push_back(*g);
  }
  return out;
}

}  // namespace

Result<int> HotResetInfo(const ModelState& s, const ModelDeviceFd& d, void* arg) {
  constexpr const char* kOp = "VFIO_DEVICE_GET_PCI_HOT_RESET_INFO";
  vfio_pci_hot_reset_info hdr{};
  std::memcpy(&hdr, arg, sizeof hdr);
  if (hdr.argsz < sizeof hdr) {
    return Fail(EINVAL, kOp, "argsz too small");
  }
  hdr.flags = 0;
  std::vector<Affected> affected = AffectedBy(s, d);
  if (affected.empty()) {
    return Fail(ENODEV, kOp, "neither the slot nor the bus can be reset");
  }
  const size_t need = sizeof hdr + affected.size() * sizeof(vfio_pci_dependent_device);
  if (hdr.argsz < need) {
    hdr.count = static_cast<uint32_t>(affected.size());
    std::memcpy(arg, &hdr, sizeof hdr);  // the kernel copies the count out with ENOSPC
    return Fail(ENOSPC, kOp, "buffer too small for the affected devices");
  }
  hdr.count = static_cast<uint32_t>(affected.size());
  std::memcpy(arg, &hdr, sizeof hdr);
  auto* out = static_cast<std::byte*>(arg) + sizeof hdr;
  for (size_t i = 0; i < affected.size(); ++i) {
    vfio_pci_dependent_device dep = Dependent(affected[i]);
    std::memcpy(out + i * sizeof dep, &dep, sizeof dep);
  }
  return 0;
}

Result<int> HotReset(ModelState& s, const ModelDeviceFd& d, void* arg) {
  constexpr const char* kOp = "VFIO_DEVICE_PCI_HOT_RESET";
  vfio_pci_hot_reset hdr{};
  std::memcpy(&hdr, arg, sizeof hdr);
  if (hdr.argsz < sizeof hdr || hdr.flags != 0) {
    return Fail(EINVAL, kOp, "argsz too small or flags set");
  }
  std::vector<Affected> affected = AffectedBy(s, d);
  if (affected.empty()) {
    return Fail(ENODEV, kOp, "neither the slot nor the bus can be reset");
  }
  if (hdr.count == 0 || hdr.count > affected.size() ||
      hdr.argsz < sizeof hdr + hdr.count * sizeof(int32_t)) {
    return Fail(EINVAL, kOp, "group count out of range");
  }
  std::vector<int32_t> fds(hdr.count);
  std::memcpy(fds.data(), static_cast<const std::byte*>(arg) + sizeof hdr,
              fds.size() * sizeof(int32_t));
  std::vector<const ModelGroupState*> groups = VFIOD_TRY(GroupsOf(s, fds.data(), hdr.count));
  for (const Affected& a : affected) {
    // The whole bus must be vfio-pci's (the dev_set is resettable), and each
    // device of it must be in a group the caller proved it owns.
    if (!RegistersWithVfio(a.member->driver)) {
      return Fail(EINVAL, kOp, "a device on the bus is not bound to vfio-pci");
    }
    if (std::find(groups.begin(), groups.end(), a.group) == groups.end()) {
      return Fail(EINVAL, kOp, "an affected device is in none of the groups given");
    }
  }
  for (const Affected& a : affected) {
    a.member->function->BusReset();
  }
  return 0;
}

}  // namespace vfiod::kernel
