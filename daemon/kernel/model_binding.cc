// ModelKernel: which driver each device is bound to, and what that means for
// VFIO (Linux 6.1 vfio_main.c and iommu.c): a device is in its group's
// device list only while vfio-pci has it (vfio_register_group_dev at probe,
// vfio_unregister_group_dev at remove), and a driver that does not manage
// DMA itself claims the group's DMA ownership at probe
// (iommu_device_use_default_domain), which makes the group not viable and
// fails while a user (a VFIO container) owns the group.
#include <algorithm>
#include <array>
#include <cerrno>

#include "kernel/model_kernel.h"
#include "kernel/model_state.h"

namespace vfiod::kernel {

bool RegistersWithVfio(std::string_view driver) { return driver == kVfioPciDriver; }

bool ClaimsKernelDma(std::string_view driver) {
  constexpr std::array<std::string_view, 3> kManagesDma = {kVfioPciDriver, "pci-stub", "pcieport"};
  return !driver.empty() &&
         std::find(kManagesDma.begin(), kManagesDma.end(), driver) == kManagesDma.end();
}

ModelPciFunction* ModelGroupState::VfioDevice(std::string_view bdf) const {
  for (const ModelMember& m : members) {
    if (m.function->topo().bdf == bdf && RegistersWithVfio(m.driver)) {
      return m.function;
    }
  }
  return nullptr;
}

bool ModelGroupState::Viable() const {
  return std::none_of(members.begin(), members.end(),
                      [](const ModelMember& m) { return ClaimsKernelDma(m.driver); });
}

bool ModelGroupState::Registered() const {
  return std::any_of(members.begin(), members.end(),
                     [](const ModelMember& m) { return RegistersWithVfio(m.driver); });
}

namespace {

/// The group and member of a device; false when the model has no such device.
bool FindMember(ModelState& s, std::string_view bdf, ModelGroupState** group,
                ModelMember** member) {
  for (auto& g : s.groups) {
    for (ModelMember& m : g->members) {
      if (m.function->topo().bdf == bdf) {
        *group = g.get();
        *member = &m;
        return true;
      }
    }
  }
  return false;
}

}  // namespace

Result<void> ModelKernel::SetDriver(std::string_view bdf, std::string_view driver) {
  const std::string op = "bind " + std::string(bdf) + " to '" + std::string(driver) + "'";
  std::lock_guard lock(mu_);
  ModelGroupState* group = nullptr;
  ModelMember* member = nullptr;
  if (!FindMember(*state_, bdf, &group, &member)) {
    return Fail(ENODEV, op, "no such device");
  }
  if (member->driver == driver) {
    return Ok();
  }
  ReapHeldDevices(*state_);
  if (RegistersWithVfio(member->driver) && member->function->open_count() > 0) {
    // Linux does not fail here: vfio_unregister_group_dev() asks the user to
    // release the device (the REQ trigger, signalled again every 10 s) and
    // waits, in the writer's sysfs write, until every fd of the device is
    // closed. The model signals the request once and, since it cannot wait
    // for ever, says "would block"; calling again repeats the request.
    (void)member->function->Request();
    return Fail(EWOULDBLOCK, op,
                "a device fd is open: Linux would block this unbind until it is closed");
  }
  if (ClaimsKernelDma(driver) && group->container) {
    return Fail(EBUSY, op, "the group is in a VFIO container: the driver cannot claim its DMA");
  }
  member->driver = driver;
  return Ok();
}

Result<std::string> ModelKernel::DriverOf(std::string_view bdf) const {
  std::lock_guard lock(mu_);
  ModelGroupState* group = nullptr;
  ModelMember* member = nullptr;
  if (!FindMember(*state_, bdf, &group, &member)) {
    return Fail(ENODEV, "driver of " + std::string(bdf), "no such device");
  }
  return member->driver;
}

}  // namespace vfiod::kernel
