#include "dma/huge_tmpfs.h"

#include <fcntl.h>
#include <linux/magic.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <fstream>
#include <memory>
#include <sstream>

namespace vfiod::dma {
namespace {

// The huge= option of the mount at `dir` (its super options in
// /proc/self/mountinfo), "" when absent. Matched by the mount id statx gives.
std::string HugeOption(int dir) {
  struct statx sx {};
  if (::statx(dir, "", AT_EMPTY_PATH, STATX_MNT_ID, &sx) != 0 ||
      (sx.stx_mask & STATX_MNT_ID) == 0) {
    return "";
  }
  std::ifstream in("/proc/self/mountinfo");
  for (std::string line; std::getline(in, line);) {
    std::istringstream fields(line);
    uint64_t id = 0;
    if (!(fields >> id) || id != sx.stx_mnt_id) {
      continue;
    }
    const auto dash = line.find(" - ");
    const auto huge = line.find("huge=", dash == std::string::npos ? 0 : dash);
    if (dash == std::string::npos || huge == std::string::npos) {
      return "";
    }
    return line.substr(huge + 5, line.find_first_of(", \n", huge) - huge - 5);
  }
  return "";
}

std::unique_ptr<HugeTmpfs>& Installed() {
  static std::unique_ptr<HugeTmpfs> installed;
  return installed;
}

}  // namespace

Result<HugeTmpfs> HugeTmpfs::MountPrivate() {
  UniqueFd context(::fsopen("tmpfs", FSOPEN_CLOEXEC));
  if (!context) {
    return ErrnoError("fsopen(tmpfs)");
  }
  if (::fsconfig(context.get(), FSCONFIG_SET_STRING, "huge", "within_size", 0) != 0) {
    return ErrnoError("fsconfig(huge=within_size)");
  }
  // No size limit (size=0): a client may grow the file it was handed (tmpfs
  // files take no seals), and under a shared limit that would let one user
  // use up the others' thp memory. Unlimited, what a client adds is its own
  // memory, charged to its own memory cgroup, as with a memfd of its own.
  if (::fsconfig(context.get(), FSCONFIG_SET_STRING, "mode", "0700", 0) != 0 ||
      ::fsconfig(context.get(), FSCONFIG_SET_STRING, "size", "0", 0) != 0 ||
      ::fsconfig(context.get(), FSCONFIG_CMD_CREATE, nullptr, nullptr, 0) != 0) {
    return ErrnoError("fsconfig(tmpfs)");
  }
  UniqueFd mount(::fsmount(context.get(), FSMOUNT_CLOEXEC,
                           MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC | MOUNT_ATTR_NOSUID));
  if (!mount) {
    return ErrnoError("fsmount(tmpfs)");
  }
  return HugeTmpfs(std::move(mount), "a private tmpfs mount (huge=within_size)");
}

Result<HugeTmpfs> HugeTmpfs::OpenDirectory(const std::string& path) {
  UniqueFd dir(::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dir) {
    return ErrnoError("open " + path);
  }
  struct statfs fs {};
  if (::fstatfs(dir.get(), &fs) != 0) {
    return ErrnoError("fstatfs " + path);
  }
  if (fs.f_type != TMPFS_MAGIC) {
    return Fail(EINVAL, "thp_tmpfs", path + " is not on a tmpfs");
  }
  const std::string huge = HugeOption(dir.get());
  if (huge != "within_size" && huge != "always" && huge != "advise") {
    return Fail(EINVAL, "thp_tmpfs",
                path + " is on a tmpfs mounted without huge=within_size (huge=" +
                    (huge.empty() ? "never" : huge) + "): its files would get 4 KiB pages");
  }
  if (fs.f_blocks != 0) {  // tmpfs reports 0 blocks when it has no size limit
    return Fail(EINVAL, "thp_tmpfs",
                path +
                    " is on a tmpfs with a size limit: mount it with size=0 (clients may "
                    "grow the files they are handed, and a shared limit lets one user use "
                    "up the others' space)");
  }
  return HugeTmpfs(std::move(dir), path + " (tmpfs huge=" + huge + ")");
}

Result<UniqueFd> HugeTmpfs::CreateFile(uint64_t size) const {
  UniqueFd fd(::openat(dir_.get(), ".", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600));
  if (!fd) {
    return ErrnoError("open(O_TMPFILE) on " + description_);
  }
  if (::ftruncate(fd.get(), static_cast<off_t>(size)) != 0) {
    return ErrnoError("ftruncate on " + description_);
  }
  return fd;
}

void InstallHugeTmpfs(HugeTmpfs tmpfs) {
  Installed() = std::make_unique<HugeTmpfs>(std::move(tmpfs));
}

const HugeTmpfs* InstalledHugeTmpfs() { return Installed().get(); }

}  // namespace vfiod::dma
