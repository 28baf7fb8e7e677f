// Tests that need real 2 MiB huge pages (a hugetlbfs memfd) on the host: the
// pool (/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages) is raised by
// a few pages for the test and put back after. Tests of several binaries may
// run at once (ctest -j), so the raise, the test and the restore happen under
// one flock: two tests never read and restore each other's counts.
#pragma once

#include <fcntl.h>
#include <linux/memfd.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <fstream>
#include <string>

namespace vfiod::testing {

class HugepagePool2M {
 public:
  static constexpr const char* kDir = "/sys/kernel/mm/hugepages/hugepages-2048kB/";
  static constexpr const char* kLock = "/tmp/vfiod-hugepages.lock";

  /// Takes the lock and makes `pages` more 2 MiB pages free; ok() says whether
  /// it could (root, a writable pool and free memory are needed). With 0
  /// pages it only holds the lock, for a test that counts the free pages.
  explicit HugepagePool2M(uint64_t pages) {
    lock_ = ::open(kLock, O_RDWR | O_CREAT | O_CLOEXEC, 0666);
    if (lock_ < 0 || ::flock(lock_, LOCK_EX) != 0) {
      return;
    }
    before_ = Read("nr_hugepages");
    const uint64_t free_before = Read("free_hugepages");
    if (::access((std::string(kDir) + "nr_hugepages").c_str(), W_OK) != 0 ||
        !Write("nr_hugepages", before_ + pages) || Read("free_hugepages") < free_before + pages) {
      Write("nr_hugepages", before_);
      return;
    }
    raised_ = true;
  }
  ~HugepagePool2M() {
    if (raised_) {
      Write("nr_hugepages", before_);
    }
    if (lock_ >= 0) {
      ::close(lock_);  // drops the flock
    }
  }
  HugepagePool2M(const HugepagePool2M&) = delete;
  HugepagePool2M& operator=(const HugepagePool2M&) = delete;

  [[nodiscard]] bool ok() const { return raised_; }
  /// Free pages in the pool now.
  [[nodiscard]] static uint64_t Free() { return Read("free_hugepages"); }

  /// A sealable hugetlbfs memfd of `bytes` (a multiple of 2 MiB), its pages
  /// allocated (fallocate); -1 on failure. The caller owns the fd.
  [[nodiscard]] static int Memfd(uint64_t bytes) {
    const int fd = ::memfd_create("vfiod-test-huge",
                                  MFD_CLOEXEC | MFD_ALLOW_SEALING | MFD_HUGETLB | MFD_HUGE_2MB);
    if (fd >= 0 && ::fallocate(fd, 0, 0, static_cast<off_t>(bytes)) != 0) {
      ::close(fd);
      return -1;
    }
    return fd;
  }

 private:
  static uint64_t Read(const char* name) {
    std::ifstream in(std::string(kDir) + name);
    uint64_t value = 0;
    in >> value;
    return value;
  }
  static bool Write(const char* name, uint64_t value) {
    std::ofstream out(std::string(kDir) + name);
    out << value;
    out.flush();
    return static_cast<bool>(out);
  }

  int lock_ = -1;
  uint64_t before_ = 0;
  bool raised_ = false;
};

}  // namespace vfiod::testing
