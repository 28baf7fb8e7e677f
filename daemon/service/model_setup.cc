#include "service/model_setup.h"

#include <spdlog/spdlog.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <map>
#include <string>

#include "kernel/map_delay_kernel.h"

namespace vfiod::service {

namespace {

// The driver of an unbound device absent from sysfs: some host driver.
constexpr std::string_view kHostDriver = "host-driver";

kernel::ModelRegion Region(uint32_t index, uint64_t size) {
  kernel::ModelRegion r;
  r.index = index;
  r.size = size;
  return r;
}

}  // namespace

kernel::ModelTopology ModelTopologyFrom(const ModelConfig& model, const vfio::PciSysfs& sysfs) {
  std::map<uint32_t, kernel::ModelGroup> groups;
  for (const auto& dev : model.devices) {
    kernel::ModelDevice m;
    m.bdf = dev.bdf;
    m.vendor_id = dev.vendor;
    m.device_id = dev.device;
    m.driver = dev.bound ? std::string(kernel::kVfioPciDriver) : std::string(kHostDriver);
    if (auto pci = sysfs.Get(dev.bdf); pci) {
      m.driver = pci->driver;  // the tree is the truth the hook keeps in step
      m.class_code = pci->class_code;
      for (const auto& bar : pci->bars) {
        if (bar.size > 0 && !bar.io) {
          m.regions.push_back(Region(bar.index, bar.size));
        }
      }
    }
    if (m.regions.empty()) {
      m.regions.push_back(Region(0, 4096));
    }
    kernel::ModelGroup& g = groups[dev.group];
    g.id = static_cast<int>(dev.group);
    g.devices.push_back(std::move(m));
  }
  kernel::ModelTopology topology;
  for (auto& [number, group] : groups) {
    topology.groups.push_back(std::move(group));
  }
  return topology;
}

std::unique_ptr<kernel::ModelKernel> MakeModelKernel(const Config& config,
                                                     const vfio::PciSysfs& sysfs) {
  kernel::ModelKnobs knobs;
  knobs.dma_entry_limit = config.model.dma_entry_limit;
  knobs.iova_ranges.clear();
  for (const auto& r : config.model.iova_ranges) {
    knobs.iova_ranges.push_back(kernel::IovaRange{r.start, r.last});
  }
  return std::make_unique<kernel::ModelKernel>(ModelTopologyFrom(config.model, sysfs), knobs);
}

namespace {

std::string FirstLine(const std::filesystem::path& path) {
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);
  return line;
}

/// Tells the model that `bdf` is now bound to `driver`; false (logged) when
/// it refuses, and then the tree must not change either.
bool ModelAgrees(kernel::ModelKernel* model, const std::string& bdf, const std::string& driver) {
  if (model == nullptr) {
    return true;
  }
  auto set = model->SetDriver(bdf, driver);
  if (!set && set.error().code == EWOULDBLOCK) {
    // On Linux this write would hang the daemon for ever: fail as loudly.
    spdlog::critical("model kernel: {} (vfiod must refuse before writing)", set.error().message());
    std::abort();
  }
  if (!set) {
    spdlog::warn("model kernel: {}", set.error().message());
  }
  return set.has_value();
}

}  // namespace

vfio::PciSysfs::WriteHook FakeSysfsKernelHook(std::filesystem::path root,
                                              kernel::ModelKernel* model) {
  return
      [root = std::move(root), model](const std::filesystem::path& path, std::string_view value) {
        namespace fs = std::filesystem;
        std::error_code ec;
        std::string v(value);
        while (!v.empty() && v.back() == '\n') {
          v.pop_back();
        }
        const fs::path device = root / "bus/pci/devices" / v;
        if (path.filename() == "unbind") {
          if (ModelAgrees(model, v, "")) {
            fs::remove(device / "driver", ec);
          }
        } else if (path.filename() == "drivers_probe") {
          std::string driver = FirstLine(device / "driver_override");
          if (!driver.empty() && driver != "(null)" && !fs::exists(device / "driver") &&
              ModelAgrees(model, v, driver)) {
            fs::path dir = root / "bus/pci/drivers" / driver;
            fs::create_directories(dir, ec);
            for (const char* name : {"bind", "unbind"}) {
              const std::ofstream created(dir / name);  // an empty file is enough
            }
            fs::create_directory_symlink(dir, device / "driver", ec);
          }
        } else if (path.filename() == "driver_override") {
          std::ofstream(path) << (v.empty() ? std::string("(null)") : v) << "\n";
        }
      };
}

KernelAndSysfs MakeModelKernelAndSysfs(const Config& config) {
  std::unique_ptr<kernel::ModelKernel> model =
      MakeModelKernel(config, vfio::PciSysfs(config.sysfs_root));
  vfio::PciSysfs sysfs(config.sysfs_root, FakeSysfsKernelHook(config.sysfs_root, model.get()));
  if (config.model.map_dma_us_per_mib == 0) {
    return KernelAndSysfs{std::move(model), std::move(sysfs)};
  }
  // The wrapper owns the model; the hook's pointer to it stays good.
  return KernelAndSysfs{
      std::make_unique<kernel::MapDelayKernel>(
          std::move(model), std::chrono::microseconds(config.model.map_dma_us_per_mib)),
      std::move(sysfs)};
}

}  // namespace vfiod::service
