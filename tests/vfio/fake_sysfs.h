// A fake sysfs tree in a temp folder, laid out as Linux lays out PCI devices,
// IOMMU groups and drivers, plus a small model of what the kernel does when
// driver_override, unbind and drivers_probe are written (see Hook()).
#pragma once

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <string_view>

#include "support/sysfs_tree.h"
#include "vfio/pci_sysfs.h"

namespace vfiod::vfio::testing {

class FakeSysfs {
 public:
  FakeSysfs() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "vfiod-sysfs-XXXXXX").string();
    root_ = ::mkdtemp(tmpl.data());
    std::filesystem::create_directories(root_ / "bus/pci/devices");
    std::filesystem::create_directories(root_ / "kernel/iommu_groups");
    Write(root_ / "bus/pci/drivers_probe", "");
  }
  ~FakeSysfs() {
    std::error_code ec;
    std::filesystem::remove_all(root_, ec);
  }
  FakeSysfs(const FakeSysfs&) = delete;
  FakeSysfs& operator=(const FakeSysfs&) = delete;

  /// Adds a device in `group` bound to `driver` ("" for none). `native` is the
  /// driver drivers_probe binds when no override is set ("" for none).
  void AddDevice(const std::string& bdf, std::string_view ids, int group, const std::string& driver,
                 const std::string& native = "") {
    test::AddSysfsDevice(root_, {.bdf = bdf,
                                 .vendor = "0x" + std::string(ids.substr(0, 4)),
                                 .device = "0x" + std::string(ids.substr(5, 4)),
                                 .group = group,
                                 .driver = driver});
    native_[bdf] = native;
  }

  void BindTo(const std::string& bdf, const std::string& driver) {
    test::BindSysfsDevice(root_, bdf, driver);
  }

  /// The kernel's part: unbind removes the driver link; drivers_probe binds the
  /// override driver if set (and "loaded"), else the device's native driver.
  PciSysfs::WriteHook Hook() {
    return [this](const std::filesystem::path& path, std::string_view value) {
      log_ += path.lexically_relative(root_).string() + "=" + std::string(value) + ";";
      std::string bdf(value);
      if (path.filename() == "unbind") {
        std::filesystem::remove(DeviceDir(bdf) / "driver");
      } else if (path.filename() == "drivers_probe") {
        std::string ovr = Read(DeviceDir(bdf) / "driver_override");
        std::string drv = ovr == "(null)" || ovr.empty() ? native_[bdf] : ovr;
        if (!drv.empty() && (drv != "vfio-pci" || vfio_loaded_)) {
          BindTo(bdf, drv);
        }
      } else if (path.filename() == "driver_override") {
        std::string v(value);
        Write(path, v == "\n" ? "(null)\n" : v + "\n");
      }
    };
  }

  std::filesystem::path DeviceDir(const std::string& bdf) const {
    return root_ / "bus/pci/devices" / bdf;
  }
  const std::filesystem::path& root() const { return root_; }
  const std::string& log() const { return log_; }
  void set_vfio_loaded(bool loaded) { vfio_loaded_ = loaded; }

  static void Write(const std::filesystem::path& path, const std::string& text) {
    std::ofstream(path) << text;
  }
  static std::string Read(const std::filesystem::path& path) {
    std::ifstream in(path);
    std::string s;
    std::getline(in, s);
    return s;
  }

 private:
  std::filesystem::path root_;
  std::map<std::string, std::string> native_;
  std::string log_;
  bool vfio_loaded_ = true;
};

}  // namespace vfiod::vfio::testing
