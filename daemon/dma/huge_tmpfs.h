// Where vfiod's `thp` memory comes from: files on a tmpfs mounted with
// huge=within_size. shmem gives huge folios to a memfd only when
// /sys/kernel/mm/transparent_hugepage/shmem_enabled allows it, and Debian's
// default there is "never"; a tmpfs mount's own huge= option is not bound by
// it (only "deny" and "force" override it). So with such a mount every
// 2 MiB-aligned 2 MiB of a file vfiod creates (sized first, so within_size
// holds) is one PMD-sized folio, on a default host, without touching a
// global setting.
#pragma once

#include <cstdint>
#include <string>

#include "proto/result.h"
#include "proto/unique_fd.h"

namespace vfiod::dma {

class HugeTmpfs {
 public:
  /// A private tmpfs (huge=within_size, no size limit) attached to no path: made with
  /// fsopen/fsconfig/fsmount and gone when vfiod exits. Needs CAP_SYS_ADMIN
  /// and the mount syscalls (not in systemd's @system-service filter).
  /// Errors: EPERM without the capability or when a seccomp filter refuses;
  /// ENOSYS on a kernel before 5.2; EINVAL when tmpfs lacks huge= (a kernel
  /// without CONFIG_TRANSPARENT_HUGEPAGE).
  [[nodiscard]] static Result<HugeTmpfs> MountPrivate();
  /// A directory on a tmpfs that someone else mounted with huge=within_size
  /// or huge=always (vfiod.service: TemporaryFileSystem=). Its huge= option
  /// is read from /proc/self/mountinfo and named in description().
  /// Errors: ENOENT/EACCES/ENOTDIR from open; EINVAL not on tmpfs, the
  /// tmpfs was mounted without huge= (or with huge=never: its files would
  /// get 4 KiB pages), or with a size limit (see CreateFile).
  [[nodiscard]] static Result<HugeTmpfs> OpenDirectory(const std::string& path);

  /// A new unnamed file of `size` bytes (O_TMPFILE, read-write). The file's
  /// sealing is locked (regular tmpfs files allow no seals): vfiod never
  /// relies on seals for its own memory, see backing_client.cc. The client
  /// it is handed to may grow it: the tmpfs must have no size limit shared
  /// by all users (MountPrivate's has none; vfiod.service mounts size=0).
  /// Errors: from open(O_TMPFILE) and ftruncate (ENOSPC: the mount's size).
  [[nodiscard]] Result<UniqueFd> CreateFile(uint64_t size) const;
  /// "a private tmpfs mount (huge=within_size)" or "DIR (tmpfs huge=...)".
  [[nodiscard]] const std::string& description() const { return description_; }

 private:
  HugeTmpfs(UniqueFd dir, std::string description)
      : dir_(std::move(dir)), description_(std::move(description)) {}
  UniqueFd dir_;  // the mount's root (MountPrivate) or the directory
  std::string description_;
};

/// The process's source of `thp` memory, set once at start before any
/// backing is made (main.cc); CreateThpBacking uses it for shareable THP.
/// Without one, shareable THP is a memfd advised MADV_HUGEPAGE (huge folios
/// only where shmem_enabled allows "advise").
void InstallHugeTmpfs(HugeTmpfs tmpfs);
[[nodiscard]] const HugeTmpfs* InstalledHugeTmpfs();

}  // namespace vfiod::dma
