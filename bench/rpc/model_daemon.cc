#include "rpc/model_daemon.h"

#include <stdlib.h>

#include <filesystem>
#include <fstream>

namespace vfiod::bench {
namespace {

namespace fs = std::filesystem;

void Write(const fs::path& path, const std::string& text) { std::ofstream(path) << text; }

// The sysfs files vfiod reads for one PCI device bound to vfio-pci in `group`.
void AddDevice(const fs::path& root, const std::string& bdf, int group) {
  const fs::path dir = root / "bus/pci/devices" / bdf;
  fs::create_directories(dir);
  Write(dir / "vendor", "0x1234\n");
  Write(dir / "device", "0x11e8\n");
  Write(dir / "subsystem_vendor", "0x1af4\n");
  Write(dir / "subsystem_device", "0x1100\n");
  Write(dir / "class", "0x00ff00\n");
  Write(dir / "driver_override", "(null)\n");
  Write(dir / "numa_node", "-1\n");
  Write(dir / "resource", "0x00000000fea00000 0x00000000feafffff 0x0000000000040200\n");
  const fs::path gdir = root / "kernel/iommu_groups" / std::to_string(group);
  fs::create_directories(gdir / "devices");
  fs::create_directory_symlink(dir, gdir / "devices" / bdf);
  fs::create_directory_symlink(gdir, dir / "iommu_group");
  const fs::path drv = root / "bus/pci/drivers/vfio-pci";
  fs::create_directories(drv);
  Write(drv / "bind", "");
  Write(drv / "unbind", "");
  fs::create_directory_symlink(drv, dir / "driver");
}

nlohmann::json ModelDevice(const char* bdf, int group) {
  return {{"bdf", bdf}, {"vendor", "1234"}, {"device", "11e8"}, {"group", group}, {"bound", true}};
}

}  // namespace

Result<DaemonProcess> StartModelDaemon(const std::string& binary, int worker_threads,
                                       const nlohmann::json& patch) {
  char tmpl[] = "/tmp/vfiod-bench-rpc-XXXXXX";
  if (::mkdtemp(tmpl) == nullptr) {
    return ErrnoError("mkdtemp");
  }
  const fs::path dir = tmpl;
  fs::create_directories(dir / "sys/bus/pci/devices");
  fs::create_directories(dir / "sys/kernel/iommu_groups");
  Write(dir / "sys/bus/pci/drivers_probe", "");
  AddDevice(dir / "sys", kModelEdu, 3);
  AddDevice(dir / "sys", kModelSecond, 4);
  nlohmann::json config = {
      {"socket", {{"group", nullptr}, {"mode", "0600"}}},
      {"kernel", "model"},
      {"sysfs_root", (dir / "sys").string()},
      {"model",
       {{"devices",
         nlohmann::json::array({ModelDevice(kModelEdu, 3), ModelDevice(kModelSecond, 4)})}}},
      {"limits",
       {{"map_chunk_bytes", "1G"}, {"worker_threads", worker_threads}, {"max_clients", 1024}}},
      {"logging", {{"level", "warn"}, {"target", "stderr"}}},
      {"policy", {{"rules", nlohmann::json::array()}}}};
  if (!patch.is_null()) {
    config.merge_patch(patch);
  }
  return DaemonProcess::Start(binary, dir.string(), config);
}

}  // namespace vfiod::bench
