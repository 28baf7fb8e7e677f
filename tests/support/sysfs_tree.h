// The one builder of fake sysfs trees for tests: a PCI device laid out as
// Linux lays it out (bus/pci/devices/<bdf> with its attributes, its IOMMU
// group under kernel/iommu_groups, its driver under bus/pci/drivers and the
// links between them). The vfio layer's FakeSysfs, the service tests' tree
// and the integration harness's tree are built with it.
#pragma once

#include <filesystem>
#include <fstream>
#include <string>

namespace vfiod::test {

/// A resource file with BAR0 1 MiB of 32-bit memory (edu's), the rest unimplemented.
inline constexpr const char* kEduResourceFile =
    "0x00000000fea00000 0x00000000feafffff 0x0000000000040200\n"
    "0x0000000000000000 0x0000000000000000 0x0000000000000000\n"
    "0x0000000000000000 0x0000000000000000 0x0000000000000000\n"
    "0x0000000000000000 0x0000000000000000 0x0000000000000000\n"
    "0x0000000000000000 0x0000000000000000 0x0000000000000000\n"
    "0x0000000000000000 0x0000000000000000 0x0000000000000000\n"
    "0x0000000000000000 0x0000000000000000 0x0000000000000000\n";

/// One PCI device as sysfs shows it.
struct SysfsDevice {
  std::string bdf{};     ///< "0000:00:03.0"
  std::string vendor{};  ///< "0x1234"
  std::string device{};  ///< "0x11e8"
  int group = 0;         ///< its IOMMU group
  std::string driver{};  ///< bound to ("" for none)
  std::string resource = kEduResourceFile;
  std::string config{};  ///< config space bytes ("": no config file)
};

inline void WriteSysfsFile(const std::filesystem::path& path, const std::string& text) {
  std::ofstream(path) << text;
}

/// Links `bdf` (a device under `root`) to `driver`, making the driver's
/// folder (with bind and unbind) when it is new; replaces any old link.
inline void BindSysfsDevice(const std::filesystem::path& root, const std::string& bdf,
                            const std::string& driver) {
  namespace fs = std::filesystem;
  const fs::path drv = root / "bus/pci/drivers" / driver;
  fs::create_directories(drv);
  WriteSysfsFile(drv / "bind", "");
  WriteSysfsFile(drv / "unbind", "");
  const fs::path link = root / "bus/pci/devices" / bdf / "driver";
  fs::remove(link);
  fs::create_directory_symlink(drv, link);
}

/// Writes `dev` under `root`: its folder and attributes (subsystem 1af4:1100,
/// class 00ff00, no driver_override, NUMA node -1), its group's folder and
/// both links, and its driver when it has one.
inline void AddSysfsDevice(const std::filesystem::path& root, const SysfsDevice& dev) {
  namespace fs = std::filesystem;
  const fs::path dir = root / "bus/pci/devices" / dev.bdf;
  fs::create_directories(dir);
  WriteSysfsFile(dir / "vendor", dev.vendor + "\n");
  WriteSysfsFile(dir / "device", dev.device + "\n");
  WriteSysfsFile(dir / "subsystem_vendor", "0x1af4\n");
  WriteSysfsFile(dir / "subsystem_device", "0x1100\n");
  WriteSysfsFile(dir / "class", "0x00ff00\n");
  WriteSysfsFile(dir / "driver_override", "(null)\n");
  WriteSysfsFile(dir / "numa_node", "-1\n");
  WriteSysfsFile(dir / "resource", dev.resource);
  if (!dev.config.empty()) {
    WriteSysfsFile(dir / "config", dev.config);
  }
  const fs::path group = root / "kernel/iommu_groups" / std::to_string(dev.group);
  fs::create_directories(group / "devices");
  fs::create_directory_symlink(dir, group / "devices" / dev.bdf);
  fs::create_directory_symlink(group, dir / "iommu_group");
  if (!dev.driver.empty()) {
    BindSysfsDevice(root, dev.bdf, dev.driver);
  }
}

}  // namespace vfiod::test
