// PCI discovery and driver binding through sysfs.
//
// Everything is read relative to a sysfs root given at construction ("/sys" in
// production, a temp folder holding a fake tree in tests). The layout used:
//   <root>/bus/pci/devices/<bdf>/{vendor,device,subsystem_vendor,subsystem_device,
//       class,driver -> .../drivers/<name>,driver_override,iommu_group -> .../<N>,
//       numa_node,resource}
//   <root>/kernel/iommu_groups/<N>/devices/<member>
//   <root>/bus/pci/drivers/<name>/{bind,unbind}, <root>/bus/pci/drivers_probe
// Plain sysfs files are not VFIO fds, so they are read and written directly.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "proto/result.h"

namespace vfiod::vfio {

/// One BAR as decoded from a line of the `resource` file.
struct PciBar {
  uint32_t index = 0;
  uint64_t start = 0;
  uint64_t size = 0;  ///< end - start + 1, 0 for an unimplemented BAR
  bool io = false;    ///< I/O port space (IORESOURCE_IO) rather than memory
  bool is_64bit = false;
  bool prefetchable = false;
};

/// A member of an IOMMU group (may be a non-PCI device) and its driver.
struct GroupMember {
  std::string name;    ///< the device's sysfs name (a BDF for PCI devices)
  std::string driver;  ///< empty when no driver is bound
  /// True when this member does not stop the group from being viable.
  [[nodiscard]] bool allows_vfio() const;
};

/// A PCI device as sysfs describes it.
struct PciDevice {
  std::string bdf;  ///< "0000:00:03.0"
  uint16_t vendor = 0;
  uint16_t device = 0;
  uint16_t subsystem_vendor = 0;
  uint16_t subsystem_device = 0;
  uint32_t class_code = 0;                 ///< 24-bit class/subclass/prog-if
  std::string driver;                      ///< empty when unbound
  std::string driver_override;             ///< empty when none is set
  std::optional<int> iommu_group;          ///< absent when the device has no IOMMU group
  std::vector<GroupMember> group_members;  ///< every device of the group, self included
  int numa_node = -1;
  std::vector<PciBar> bars;  ///< the six BARs (index 0..5), implemented or not

  /// Viability as sysfs shows it: the group exists and every member allows VFIO
  /// (see GroupMember::allows_vfio). VFIO_GROUP_GET_STATUS is the final word.
  [[nodiscard]] bool group_viable() const;
  /// The members that make the group non-viable, as "bdf (driver)".
  [[nodiscard]] std::vector<std::string> blocking_members() const;
};

/// True when a device bound to `driver` leaves its group usable by VFIO. Since
/// Linux 5.19 the kernel counts a group as viable when no bound driver claims
/// kernel DMA ownership: drivers that set driver_managed_dma do not (vfio-pci
/// and its variant drivers "*_vfio_pci", pci-stub, pcieport), and neither does
/// a device with no driver.
[[nodiscard]] bool DriverAllowsVfio(std::string_view driver);

/// A device selector: a BDF ("0000:00:03.0", or "00:03.0" for domain 0) or a
/// "vendor:device" id pair in hex ("1234:11e8").
struct PciMatch {
  std::optional<std::string> bdf;
  std::optional<std::pair<uint16_t, uint16_t>> ids;
  [[nodiscard]] bool Matches(const PciDevice& dev) const;
};
/// Parses a selector. EINVAL when it is neither a BDF nor a "vvvv:dddd" pair.
[[nodiscard]] Result<PciMatch> ParsePciMatch(std::string_view text);

/// What Bind() changed, so Restore() can undo it.
struct BindRecord {
  std::string bdf;
  std::string previous_driver;    ///< empty when the device was unbound
  std::string previous_override;  ///< empty when none was set
  /// The device's group viability after binding (as sysfs shows it), and the
  /// members still blocking it, as "bdf (driver)".
  bool group_viable = false;
  std::vector<std::string> blocking_members;
};

/// Reads and writes one sysfs tree. Not thread-safe; each call reads fresh state.
class PciSysfs {
 public:
  /// Called after each attribute write with (path, value written). Tests use it
  /// to play the kernel's part in a fake tree (move a driver link on bind).
  using WriteHook = std::function<void(const std::filesystem::path&, std::string_view)>;

  explicit PciSysfs(std::filesystem::path root = "/sys", WriteHook hook = {});

  /// Every PCI device, sorted by BDF. ENOENT when <root>/bus/pci/devices is missing.
  [[nodiscard]] Result<std::vector<PciDevice>> List() const;
  /// One device by BDF. ENODEV when no such device exists.
  [[nodiscard]] Result<PciDevice> Get(std::string_view bdf) const;
  /// The devices a selector names. ENODEV when it names none.
  [[nodiscard]] Result<std::vector<PciDevice>> Find(const PciMatch& match) const;
  /// The members of IOMMU group `group` with their drivers, sorted by name;
  /// empty when the group does not exist.
  [[nodiscard]] std::vector<GroupMember> GroupMembers(int group) const;

  /// Binds a device to vfio-pci: sets driver_override, unbinds the current
  /// driver, writes the BDF to drivers_probe, then re-reads the device.
  /// ENODEV: no such device; EIO: afterwards the device is not bound to
  /// vfio-pci (is the module loaded?); errno of a failing write otherwise.
  /// Binding a device already on vfio-pci succeeds and changes nothing.
  [[nodiscard]] Result<BindRecord> BindVfio(std::string_view bdf) const;
  /// Unbinds from the current driver (if any). ENODEV: no such device.
  [[nodiscard]] Result<void> Unbind(std::string_view bdf) const;
  /// Undoes BindVfio: restores driver_override, unbinds vfio-pci and lets the
  /// previous driver probe again. EIO when the previous driver did not return.
  [[nodiscard]] Result<void> Restore(const BindRecord& record) const;

  [[nodiscard]] const std::filesystem::path& root() const { return root_; }

 private:
  [[nodiscard]] std::filesystem::path DevicePath(std::string_view bdf) const;
  [[nodiscard]] Result<PciDevice> Read(const std::string& bdf) const;
  [[nodiscard]] Result<void> WriteAttr(const std::filesystem::path& path,
                                       std::string_view value) const;

  std::filesystem::path root_;
  WriteHook hook_;
};

/// Parses the text of a `resource` file into the six standard BARs.
[[nodiscard]] std::vector<PciBar> ParseResourceFile(std::string_view text);

/// Whether a PCI address may leave out its domain ("00:03.0").
enum class BdfDomain { kOptional, kRequired };

/// The one parser of PCI addresses: the canonical "dddd:bb:ss.f" (lower-case
/// hex, the "0000:" domain added when it is optional and missing). EINVAL
/// when `text` is not exactly [dddd:]bb:ss.f with a slot of at most 1f and a
/// function of at most 7 (no spaces, signs or extra digits).
[[nodiscard]] Result<std::string> NormalizeBdf(std::string_view text,
                                               BdfDomain domain = BdfDomain::kOptional);

}  // namespace vfiod::vfio
