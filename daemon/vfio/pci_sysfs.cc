#include "vfio/pci_sysfs.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <fstream>
#include <sstream>
#include <system_error>

#include "proto/unique_fd.h"

namespace vfiod::vfio {
namespace fs = std::filesystem;

namespace {

// Linux IORESOURCE_* flag bits, as printed in the third column of `resource`.
constexpr uint64_t kIoResourceIo = 0x100;
constexpr uint64_t kIoResourceMem = 0x200;
constexpr uint64_t kIoResourcePrefetch = 0x2000;
constexpr uint64_t kIoResourceMem64 = 0x100000;
constexpr uint32_t kStandardBars = 6;
constexpr std::string_view kVfioPci = "vfio-pci";

std::string Trim(std::string s) {
  auto not_space = [](unsigned char c) { return !std::isspace(c); };
  s.erase(s.begin(), std::find_if(s.begin(), s.end(), not_space));
  s.erase(std::find_if(s.rbegin(), s.rend(), not_space).base(), s.end());
  return s;
}

// The attribute's content without surrounding whitespace; empty if unreadable.
std::string ReadAttr(const fs::path& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return Trim(ss.str());
}

// Parses "0x1234" or "1234" as hex; nullopt when malformed.
std::optional<uint64_t> ParseHex(std::string_view text) {
  if (text.starts_with("0x") || text.starts_with("0X")) {
    text.remove_prefix(2);
  }
  uint64_t value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value, 16);
  if (ec != std::errc() || end != text.data() + text.size() || text.empty()) {
    return std::nullopt;
  }
  return value;
}

uint64_t ReadHexAttr(const fs::path& path) { return ParseHex(ReadAttr(path)).value_or(0); }

// The last path component of a symlink's target; empty when it is not a link.
std::string LinkBasename(const fs::path& link) {
  std::error_code ec;
  fs::path target = fs::read_symlink(link, ec);
  return ec ? std::string() : target.filename().string();
}

bool IsHexDigits(std::string_view s, size_t n) {
  return s.size() == n &&
         std::all_of(s.begin(), s.end(), [](unsigned char c) { return std::isxdigit(c) != 0; });
}

}  // namespace

bool DriverAllowsVfio(std::string_view driver) {
  return driver.empty() || driver == kVfioPci || driver == "pci-stub" || driver == "pcieport" ||
         driver.ends_with("_vfio_pci") || driver.ends_with("-vfio-pci");
}

bool GroupMember::allows_vfio() const { return DriverAllowsVfio(driver); }

bool PciDevice::group_viable() const {
  return iommu_group.has_value() &&
         std::all_of(group_members.begin(), group_members.end(),
                     [](const GroupMember& m) { return m.allows_vfio(); });
}

std::vector<std::string> PciDevice::blocking_members() const {
  std::vector<std::string> out;
  for (const GroupMember& m : group_members) {
    if (!m.allows_vfio()) {
      out.push_back(m.name + " (" + m.driver + ")");
    }
  }
  return out;
}

Result<std::string> NormalizeBdf(std::string_view text, BdfDomain domain) {
  std::string s(text);
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  if (s.size() == 7 && domain == BdfDomain::kOptional) {
    s = "0000:" + s;
  }
  // A slot is 5 bits (00-1f), a function 3 (0-7).
  bool ok = s.size() == 12 && IsHexDigits(std::string_view(s).substr(0, 4), 4) && s[4] == ':' &&
            IsHexDigits(std::string_view(s).substr(5, 2), 2) && s[7] == ':' &&
            (s[8] == '0' || s[8] == '1') && IsHexDigits(std::string_view(s).substr(9, 1), 1) &&
            s[10] == '.' && s[11] >= '0' && s[11] <= '7';
  if (!ok) {
    return Fail(EINVAL, "parse PCI address",
                "'" + std::string(text) + "' is not " +
                    (domain == BdfDomain::kOptional ? "[dddd:]bb:ss.f" : "dddd:bb:ss.f"));
  }
  return s;
}

Result<PciMatch> ParsePciMatch(std::string_view text) {
  PciMatch match;
  if (auto bdf = NormalizeBdf(text)) {
    match.bdf = *bdf;
    return match;
  }
  if (text.find(':') == 4 && text.size() == 9 && IsHexDigits(text.substr(0, 4), 4) &&
      IsHexDigits(text.substr(5), 4)) {
    auto vendor = ParseHex(text.substr(0, 4));
    auto device = ParseHex(text.substr(5));
    if (vendor && device) {
      match.ids = {static_cast<uint16_t>(*vendor), static_cast<uint16_t>(*device)};
      return match;
    }
  }
  return Fail(EINVAL, "parse PCI selector",
              "'" + std::string(text) + "' is neither a BDF nor a vendor:device pair");
}

bool PciMatch::Matches(const PciDevice& dev) const {
  if (bdf && *bdf != dev.bdf) {
    return false;
  }
  if (ids && (ids->first != dev.vendor || ids->second != dev.device)) {
    return false;
  }
  return bdf.has_value() || ids.has_value();
}

std::vector<PciBar> ParseResourceFile(std::string_view text) {
  std::vector<PciBar> bars;
  std::istringstream in{std::string(text)};
  std::string start_s;
  std::string end_s;
  std::string flags_s;
  for (uint32_t i = 0; i < kStandardBars && (in >> start_s >> end_s >> flags_s); ++i) {
    PciBar bar{.index = i};
    uint64_t start = ParseHex(start_s).value_or(0);
    uint64_t end = ParseHex(end_s).value_or(0);
    uint64_t flags = ParseHex(flags_s).value_or(0);
    if (end > start || (end == start && flags != 0)) {
      bar.start = start;
      bar.size = end - start + 1;
    }
    bar.io = (flags & kIoResourceIo) != 0;
    bar.is_64bit = (flags & kIoResourceMem) != 0 && (flags & kIoResourceMem64) != 0;
    bar.prefetchable = (flags & kIoResourcePrefetch) != 0;
    bars.push_back(bar);
  }
  return bars;
}

PciSysfs::PciSysfs(fs::path root, WriteHook hook)
    : root_(std::move(root)), hook_(std::move(hook)) {}

fs::path PciSysfs::DevicePath(std::string_view bdf) const {
  return root_ / "bus/pci/devices" / std::string(bdf);
}

std::vector<GroupMember> PciSysfs::GroupMembers(int group) const {
  std::vector<GroupMember> members;
  std::error_code ec;
  fs::path dir = root_ / "kernel/iommu_groups" / std::to_string(group) / "devices";
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    members.push_back(GroupMember{.name = entry.path().filename().string(),
                                  .driver = LinkBasename(entry.path() / "driver")});
  }
  std::sort(members.begin(), members.end(),
            [](const GroupMember& a, const GroupMember& b) { return a.name < b.name; });
  return members;
}

Result<PciDevice> PciSysfs::Read(const std::string& bdf) const {
  fs::path dir = DevicePath(bdf);
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) {
    return Fail(ENODEV, "find PCI device " + bdf, "no " + dir.string());
  }
  PciDevice dev;
  dev.bdf = bdf;
  dev.vendor = static_cast<uint16_t>(ReadHexAttr(dir / "vendor"));
  dev.device = static_cast<uint16_t>(ReadHexAttr(dir / "device"));
  dev.subsystem_vendor = static_cast<uint16_t>(ReadHexAttr(dir / "subsystem_vendor"));
  dev.subsystem_device = static_cast<uint16_t>(ReadHexAttr(dir / "subsystem_device"));
  dev.class_code = static_cast<uint32_t>(ReadHexAttr(dir / "class"));
  dev.driver = LinkBasename(dir / "driver");
  dev.driver_override = ReadAttr(dir / "driver_override");
  if (dev.driver_override == "(null)") {
    dev.driver_override.clear();
  }
  std::string group = LinkBasename(dir / "iommu_group");
  int group_no = 0;
  auto [end, gec] = std::from_chars(group.data(), group.data() + group.size(), group_no);
  if (!group.empty() && gec == std::errc() && end == group.data() + group.size()) {
    dev.iommu_group = group_no;
    dev.group_members = GroupMembers(group_no);
  }
  std::string numa = ReadAttr(dir / "numa_node");
  std::from_chars(numa.data(), numa.data() + numa.size(), dev.numa_node);
  dev.bars = ParseResourceFile(ReadAttr(dir / "resource"));
  return dev;
}

Result<std::vector<PciDevice>> PciSysfs::List() const {
  fs::path dir = root_ / "bus/pci/devices";
  std::error_code ec;
  fs::directory_iterator it(dir, ec);
  if (ec) {
    return ErrnoError("list " + dir.string(), ec.value());
  }
  std::vector<PciDevice> out;
  for (const auto& entry : it) {
    auto dev = Read(entry.path().filename().string());
    if (dev) {  // a device removed while listing is simply not listed
      out.push_back(std::move(*dev));
    }
  }
  std::sort(out.begin(), out.end(),
            [](const PciDevice& a, const PciDevice& b) { return a.bdf < b.bdf; });
  return out;
}

Result<PciDevice> PciSysfs::Get(std::string_view bdf) const {
  std::string canonical = VFIOD_TRY(NormalizeBdf(bdf));
  return Read(canonical);
}

Result<std::vector<PciDevice>> PciSysfs::Find(const PciMatch& match) const {
  std::vector<PciDevice> all = VFIOD_TRY(List());
  std::erase_if(all, [&](const PciDevice& d) { return !match.Matches(d); });
  if (all.empty()) {
    return Fail(ENODEV, "find PCI device", "no device matches the selector");
  }
  return all;
}

Result<void> PciSysfs::WriteAttr(const fs::path& path, std::string_view value) const {
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
  if (!fd) {
    return ErrnoError("open " + path.string());
  }
  // sysfs takes an attribute in one write(); a short write is an error here.
  ssize_t n = ::write(fd.get(), value.data(), value.size());
  if (n < 0) {
    return ErrnoError("write '" + std::string(value) + "' to " + path.string());
  }
  if (static_cast<size_t>(n) != value.size()) {
    return Fail(EIO, "write " + path.string(), "short write");
  }
  if (hook_) {
    hook_(path, value);
  }
  return Ok();
}

Result<void> PciSysfs::Unbind(std::string_view bdf) const {
  PciDevice dev = VFIOD_TRY(Get(bdf));
  if (dev.driver.empty()) {
    return Ok();
  }
  return WriteAttr(DevicePath(dev.bdf) / "driver/unbind", dev.bdf);
}

Result<BindRecord> PciSysfs::BindVfio(std::string_view bdf) const {
  PciDevice dev = VFIOD_TRY(Get(bdf));
  BindRecord record{dev.bdf, dev.driver, dev.driver_override, dev.group_viable(),
                    dev.blocking_members()};
  if (dev.driver == kVfioPci) {
    return record;
  }
  VFIOD_TRY(WriteAttr(DevicePath(dev.bdf) / "driver_override", kVfioPci));
  VFIOD_TRY(Unbind(dev.bdf));
  VFIOD_TRY(WriteAttr(root_ / "bus/pci/drivers_probe", dev.bdf));
  PciDevice after = VFIOD_TRY(Read(dev.bdf));
  if (after.driver != kVfioPci) {
    return Fail(EIO, "bind " + dev.bdf + " to vfio-pci",
                after.driver.empty() ? "the device has no driver after probing; is vfio-pci loaded?"
                                     : "the device is bound to " + after.driver);
  }
  record.group_viable = after.group_viable();
  record.blocking_members = after.blocking_members();
  return record;
}

Result<void> PciSysfs::Restore(const BindRecord& record) const {
  PciDevice dev = VFIOD_TRY(Get(record.bdf));
  // An empty override is written as "\n", which the kernel takes as "clear".
  std::string override_value = record.previous_override.empty() ? "\n" : record.previous_override;
  VFIOD_TRY(WriteAttr(DevicePath(dev.bdf) / "driver_override", override_value));
  if (dev.driver == record.previous_driver) {
    return Ok();
  }
  VFIOD_TRY(Unbind(dev.bdf));
  if (record.previous_driver.empty()) {
    return Ok();
  }
  VFIOD_TRY(WriteAttr(root_ / "bus/pci/drivers_probe", dev.bdf));
  PciDevice after = VFIOD_TRY(Read(dev.bdf));
  if (after.driver != record.previous_driver) {
    return Fail(EIO, "restore driver of " + dev.bdf,
                "expected " + record.previous_driver + ", found " +
                    (after.driver.empty() ? std::string("no driver") : after.driver));
  }
  return Ok();
}

}  // namespace vfiod::vfio
