// ProcPageInfoReader: pread(2) on /proc/self/pagemap and /proc/kpageflags.
// Both files hold one little-endian 64-bit entry per page, at offset 8 * index.
#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <cerrno>
#include <limits>

#include "dma/contiguity.h"

namespace vfiod::dma {
namespace {

constexpr const char* kPagemapPath = "/proc/self/pagemap";
constexpr const char* kKpageflagsPath = "/proc/kpageflags";

Result<void> PreadEntries(int fd, const char* path, uint64_t index, std::span<uint64_t> out) {
  constexpr uint64_t kMaxIndex = std::numeric_limits<off_t>::max() / sizeof(uint64_t);
  if (index > kMaxIndex || out.size() > kMaxIndex - index) {
    return Fail(EINVAL, fmt::format("pread {}", path), fmt::format("index {:#x} too large", index));
  }
  auto* buf = reinterpret_cast<char*>(out.data());
  size_t want = out.size_bytes();
  size_t done = 0;
  while (done < want) {
    off_t off = static_cast<off_t>(index * sizeof(uint64_t) + done);
    ssize_t n = ::pread(fd, buf + done, want - done, off);
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      return ErrnoError(fmt::format("pread {}", path), errno,
                        fmt::format("{} entries at index {:#x}", out.size(), index));
    }
    if (n == 0) {
      return Fail(EIO, fmt::format("pread {}", path),
                  fmt::format("end of file at index {:#x}", index + done / sizeof(uint64_t)));
    }
    done += static_cast<size_t>(n);
  }
  return Ok();
}

}  // namespace

Result<std::unique_ptr<ProcPageInfoReader>> ProcPageInfoReader::Open() {
  UniqueFd pagemap(::open(kPagemapPath, O_RDONLY | O_CLOEXEC));
  if (!pagemap) {
    return ErrnoError(fmt::format("open {}", kPagemapPath));
  }
  UniqueFd kpageflags(::open(kKpageflagsPath, O_RDONLY | O_CLOEXEC));
  int kpageflags_errno = kpageflags ? 0 : errno;
  return std::unique_ptr<ProcPageInfoReader>(
      new ProcPageInfoReader(std::move(pagemap), std::move(kpageflags), kpageflags_errno));
}

Result<void> ProcPageInfoReader::ReadPagemap(uint64_t first_vpn, std::span<uint64_t> out) {
  return PreadEntries(pagemap_.get(), kPagemapPath, first_vpn, out);
}

Result<void> ProcPageInfoReader::ReadKpageflags(uint64_t first_pfn, std::span<uint64_t> out) {
  if (!kpageflags_) {
    // Any failure to open counts as "not readable", the one case callers degrade on.
    return ErrnoError(fmt::format("open {}", kKpageflagsPath), EACCES,
                      fmt::format("open failed with errno {}", kpageflags_errno_));
  }
  return PreadEntries(kpageflags_.get(), kKpageflagsPath, first_pfn, out);
}

Result<std::string> ProcPageInfoReader::ReadSmaps() {
  UniqueFd fd(::open("/proc/self/smaps", O_RDONLY | O_CLOEXEC));
  if (!fd) {
    return ErrnoError("open /proc/self/smaps");
  }
  std::string text;
  char buf[1 << 16];
  for (;;) {
    ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0) {
      return ErrnoError("read /proc/self/smaps");
    }
    if (n == 0) {
      return text;
    }
    text.append(buf, static_cast<size_t>(n));
  }
}

}  // namespace vfiod::dma
