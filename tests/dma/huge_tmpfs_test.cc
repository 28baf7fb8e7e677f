// HugeTmpfs: vfiod's source of `thp` memory. The private mount gives a file
// PMD-sized folios although the host's shmem_enabled is left alone (checked
// in /proc/self/smaps, independently of vfiod's own folio report); a
// directory must be on a tmpfs mounted with huge=.
#include "dma/huge_tmpfs.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "dma/backing.h"
#include "dma/backing_memory.h"

namespace vfiod::dma {
namespace {

constexpr int kCapSysAdmin = 21;

bool HasCapSysAdmin() {
  std::ifstream in("/proc/self/status");
  for (std::string line; std::getline(in, line);) {
    if (line.starts_with("CapEff:")) {
      return ((std::stoull(line.substr(7), nullptr, 16) >> kCapSysAdmin) & 1U) != 0;
    }
  }
  ADD_FAILURE() << "no CapEff line";
  return false;
}

// The kB of `addr`'s mapping that smaps counts as PMD-mapped shmem/file pages.
uint64_t PmdMappedKb(const void* addr) {
  std::ifstream in("/proc/self/smaps");
  const auto want = reinterpret_cast<uintptr_t>(addr);
  bool inside = false;
  uint64_t kb = 0;
  for (std::string line; std::getline(in, line);) {
    uintptr_t lo = 0;
    uintptr_t hi = 0;
    char dash = 0;
    std::istringstream head(line);
    if (head >> std::hex >> lo >> dash >> hi && dash == '-') {
      inside = lo <= want && want < hi;
      continue;
    }
    for (const char* key : {"ShmemPmdMapped:", "FilePmdMapped:"}) {
      if (inside && line.starts_with(key)) {
        kb += std::stoull(line.substr(std::string(key).size()));
      }
    }
  }
  return kb;
}

TEST(HugeTmpfsTest, PrivateMountGivesPmdSizedFoliosOrNeedsTheCapability) {
  auto tmpfs = HugeTmpfs::MountPrivate();
  if (!HasCapSysAdmin()) {
    ASSERT_FALSE(tmpfs);
    EXPECT_EQ(tmpfs.error().code, EPERM) << tmpfs.error().message();
    return;
  }
  ASSERT_TRUE(tmpfs) << tmpfs.error().message();
  EXPECT_EQ(tmpfs->description(), "a private tmpfs mount (huge=within_size)");
  constexpr uint64_t kSize = 2 * kPage2M;
  auto file = tmpfs->CreateFile(kSize);
  ASSERT_TRUE(file) << file.error().message();
  // No size limit (tmpfs reports 0 blocks): no user can fill it for the others.
  struct statfs fs {};
  ASSERT_EQ(::fstatfs(file->get(), &fs), 0);
  EXPECT_EQ(fs.f_blocks, 0u);
  EXPECT_EQ(::lseek(file->get(), 0, SEEK_END), static_cast<off_t>(kSize));
  auto view = MapAligned(kSize, kPage2M, PROT_READ | PROT_WRITE, MAP_SHARED, file->get(), 0);
  ASSERT_TRUE(view) << view.error().message();
  ASSERT_TRUE(PopulateWrite(view->addr(), kSize, kPage4K));
  EXPECT_EQ(PmdMappedKb(view->addr()), kSize >> 10) << "expected every 2 MiB as one PMD";
}

TEST(HugeTmpfsTest, ShareableThpBackingComesFromTheTmpfs) {
  auto tmpfs = HugeTmpfs::MountPrivate();
  if (!tmpfs) {
    EXPECT_FALSE(HasCapSysAdmin()) << tmpfs.error().message();
    return;
  }
  auto backing = CreateThpBacking(kPage2M, /*shareable=*/true, {}, &*tmpfs);
  ASSERT_TRUE(backing) << backing.error().message();
  EXPECT_EQ(PmdMappedKb(backing->data()), kPage2M >> 10);
  // A tmpfs file, not a memfd: its sealing is locked, and vfiod added nothing.
  EXPECT_EQ(::fcntl(backing->fd(), F_GET_SEALS), F_SEAL_SEAL);
}

TEST(HugeTmpfsTest, ADirectoryMustBeOnATmpfsWithHugePages) {
  auto root = HugeTmpfs::OpenDirectory("/");
  ASSERT_FALSE(root);
  EXPECT_EQ(root.error().code, EINVAL);
  EXPECT_NE(root.error().message().find("not on a tmpfs"), std::string::npos);
  EXPECT_EQ(HugeTmpfs::OpenDirectory("/nonexistent-vfiod").error().code, ENOENT);
  if (!HasCapSysAdmin()) {
    return;  // the mounts below need it; the refusals above do not
  }
  const std::filesystem::path dir =
      std::filesystem::temp_directory_path() / ("vfiod-huge-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  struct Case {
    const char* options;
    const char* refusal;  // nullptr: accepted
  };
  for (const Case& c :
       {Case{"huge=never,size=0", "huge=never"}, Case{"huge=within_size,size=64m", "size limit"},
        Case{"huge=within_size,size=0", nullptr}}) {
    ASSERT_EQ(::mount("tmpfs", dir.c_str(), "tmpfs", 0, c.options), 0) << std::strerror(errno);
    auto opened = HugeTmpfs::OpenDirectory(dir);
    if (c.refusal != nullptr) {
      ASSERT_FALSE(opened) << c.options;
      EXPECT_EQ(opened.error().code, EINVAL);
      EXPECT_NE(opened.error().message().find(c.refusal), std::string::npos)
          << opened.error().message();
    } else {
      ASSERT_TRUE(opened) << opened.error().message();
      EXPECT_NE(opened->description().find("tmpfs huge=within_size"), std::string::npos);
      EXPECT_TRUE(opened->CreateFile(kPage2M));
    }
    ::umount2(dir.c_str(), MNT_DETACH);
  }
  std::filesystem::remove(dir);
}

}  // namespace
}  // namespace vfiod::dma
