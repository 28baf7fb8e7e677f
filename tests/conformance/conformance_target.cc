#include "conformance_target.h"

#include <fcntl.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string_view>

#include "kernel/model_kernel.h"

namespace vfiod::conformance {
namespace {

Options& Configured() {
  static Options options;
  return options;
}

std::string EnvOr(const char* name, const char* fallback) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' ? v : fallback;
}

/// "00:03.0" -> "0000:00:03.0"; full addresses pass unchanged.
std::string FullBdf(const std::string& bdf) { return bdf.size() == 7 ? "0000:" + bdf : bdf; }

Result<int> SysfsGroupOf(const std::string& bdf) {
  std::string link = "/sys/bus/pci/devices/" + bdf + "/iommu_group";
  char target[512] = {};
  ssize_t n = ::readlink(link.c_str(), target, sizeof target - 1);
  if (n < 0) {
    return ErrnoError("readlink " + link);
  }
  std::string_view path(target, static_cast<size_t>(n));
  std::string_view name = path.substr(path.rfind('/') + 1);
  int group = -1;
  auto [end, ec] = std::from_chars(name.data(), name.data() + name.size(), group);
  if (ec != std::errc() || end != name.data() + name.size()) {
    return Fail(EINVAL, "readlink " + link, "unexpected target " + std::string(path));
  }
  return group;
}

std::string SysfsDevice(const std::string& bdf) { return "/sys/bus/pci/devices/" + bdf; }

/// One write(), as sysfs attributes want.
Result<void> WriteSysfs(const std::string& path, const std::string& value) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) {
    return ErrnoError("open " + path);
  }
  ssize_t n = ::write(fd, value.data(), value.size());
  int saved = errno;
  ::close(fd);
  errno = saved;
  if (n < 0) {
    return ErrnoError("write '" + value + "' to " + path);
  }
  return Ok();
}

std::string SysfsDriverOf(const std::string& bdf) {
  std::error_code ec;
  auto target = std::filesystem::read_symlink(SysfsDevice(bdf) + "/driver", ec);
  return ec ? "" : target.filename().string();
}

}  // namespace

std::string ParseOptions(int argc, char** argv, Options* out) {
  Options o;
  o.device = EnvOr("VFIOD_EDU_BDF", "0000:00:03.0");
  o.nonviable = EnvOr("VFIOD_NONVIABLE_BDF", "0000:00:1f.3");
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    auto value = [&](std::string_view flag, std::string* dst) {
      if (!a.starts_with(flag)) {
        return false;
      }
      *dst = std::string(a.substr(flag.size()));
      return true;
    };
    if (!value("--kernel=", &o.kernel) && !value("--device=", &o.device) &&
        !value("--nonviable=", &o.nonviable)) {
      return "unknown argument: " + std::string(a);
    }
  }
  if (o.kernel != "model" && o.kernel != "linux") {
    return "--kernel must be model or linux";
  }
  o.device = FullBdf(o.device);
  o.nonviable = FullBdf(o.nonviable);
  *out = o;
  return "";
}

void Target::Configure(Options options) { Configured() = std::move(options); }

Target& Target::Get() {
  static Target target(Configured());
  return target;
}

Target::Target(Options options) : options_(std::move(options)) {
  if (options_.kernel == "linux") {
    kernel_ = kernel::MakeLinuxKernel();
  } else {
    kernel_ = std::make_unique<kernel::ModelKernel>(kernel::VmLikeTopology());
  }
}

Result<int> Target::GroupOf(const std::string& bdf) const {
  if (auto* model = dynamic_cast<kernel::ModelKernel*>(kernel_.get())) {
    return model->GroupOf(bdf);
  }
  return SysfsGroupOf(bdf);
}

std::pair<int, int> Target::Release() const {
  if (model() != nullptr) {
    return {6, 1};
  }
  struct utsname u {};
  int major = 0;
  int minor = 0;
  if (::uname(&u) == 0 && std::sscanf(u.release, "%d.%d", &major, &minor) == 2) {
    return {major, minor};
  }
  return {0, 0};
}

kernel::ModelKernel* Target::model() const {
  return dynamic_cast<kernel::ModelKernel*>(kernel_.get());
}

std::vector<std::string> Target::GroupMembers(int group) const {
  std::vector<std::string> out;
  if (auto* m = model()) {
    for (const kernel::ModelGroup& g : m->topology().groups) {
      for (const kernel::ModelDevice& d : g.devices) {
        if (g.id == group) {
          out.push_back(d.bdf);
        }
      }
    }
  } else {
    std::error_code ec;
    std::filesystem::directory_iterator it(
        "/sys/kernel/iommu_groups/" + std::to_string(group) + "/devices", ec);
    for (; !ec && it != std::filesystem::directory_iterator(); it.increment(ec)) {
      out.push_back(it->path().filename().string());
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::string Target::DriverOf(const std::string& bdf) const {
  if (auto* m = model()) {
    return m->DriverOf(bdf).value_or("");
  }
  return SysfsDriverOf(bdf);
}

Result<void> Target::Unbind(const std::string& bdf) {
  if (auto* m = model()) {
    return m->SetDriver(bdf, "");
  }
  if (SysfsDriverOf(bdf).empty()) {
    return Ok();
  }
  return WriteSysfs(SysfsDevice(bdf) + "/driver/unbind", bdf);
}

Result<std::string> Target::Probe(const std::string& bdf, const std::string& driver) {
  if (auto* m = model()) {
    if (auto set = m->SetDriver(bdf, driver); !set && set.error().code != EBUSY) {
      return std::unexpected(set.error());
    }
    return DriverOf(bdf);
  }
  VFIOD_TRY(WriteSysfs(SysfsDevice(bdf) + "/driver_override", driver));
  // A probe that fails (EBUSY from the IOMMU core, say) may or may not fail
  // the write; what counts is where the device ends up.
  (void)WriteSysfs("/sys/bus/pci/drivers_probe", bdf);
  return SysfsDriverOf(bdf);
}

}  // namespace vfiod::conformance
