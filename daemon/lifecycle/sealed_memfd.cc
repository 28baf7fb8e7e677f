#include "lifecycle/sealed_memfd.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

namespace vfiod::lifecycle {

static_assert(kRecordSeals == (F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE));

namespace {

Result<void> WriteAll(int fd, std::string_view bytes) {
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = ::pwrite(fd, bytes.data() + done, bytes.size() - done, static_cast<off_t>(done));
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      return ErrnoError("pwrite memfd", n < 0 ? errno : ENOSPC);
    }
    done += static_cast<size_t>(n);
  }
  return Ok();
}

}  // namespace

Result<UniqueFd> WriteSealedMemfd(const char* name, std::string_view bytes) {
  if (bytes.size() > kMaxSealedBytes) {
    return Fail(EFBIG, "sealed memfd", "record larger than 64 MiB");
  }
  UniqueFd fd(::memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING));
  if (!fd) {
    return ErrnoError("memfd_create");
  }
  VFIOD_TRY(WriteAll(fd.get(), bytes));
  if (::fcntl(fd.get(), F_ADD_SEALS, kRecordSeals) < 0) {
    return ErrnoError("fcntl F_ADD_SEALS");
  }
  return fd;
}

Result<std::string> ReadSealedMemfd(int fd) {
  int seals = ::fcntl(fd, F_GET_SEALS);
  if (seals < 0) {
    return ErrnoError("fcntl F_GET_SEALS");
  }
  if ((seals & kRecordSeals) != kRecordSeals) {
    return Fail(EPERM, "sealed memfd", "not sealed against writes and resizing");
  }
  struct stat st {};
  if (::fstat(fd, &st) < 0) {
    return ErrnoError("fstat memfd");
  }
  if (st.st_size < 0 || static_cast<uint64_t>(st.st_size) > kMaxSealedBytes) {
    return Fail(EFBIG, "sealed memfd", "record larger than 64 MiB");
  }
  std::string bytes(static_cast<size_t>(st.st_size), '\0');
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = ::pread(fd, bytes.data() + done, bytes.size() - done, static_cast<off_t>(done));
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0) {
      return ErrnoError("pread memfd");
    }
    if (n == 0) {
      return Fail(EIO, "sealed memfd", "shorter than its size");
    }
    done += static_cast<size_t>(n);
  }
  return bytes;
}

}  // namespace vfiod::lifecycle
