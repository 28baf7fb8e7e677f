// Inside the test VM (real kernel): the contiguity report of a vfiod without
// CAP_SYS_ADMIN, as vfiod.service runs it. /proc/self/pagemap then hides the
// PFNs; the report must still say what needs no privilege: THP folio sizes
// from smaps, hugetlb's from the backing, "unknown" state and a note, and
// the memory must still work for edu. The same calls to a vfiod with the
// capability are the control: physical runs, folios from kpageflags.
// The THP memory comes from a tmpfs mounted with huge=within_size, as the
// unit's TemporaryFileSystem= provides it (vfiod cannot mount one itself
// without the capability).
#include <gtest/gtest.h>
#include <linux/capability.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/syscall.h>

#include <fstream>

#include "as_user.h"
#include "daemon_harness.h"
#include "edu_bar.h"

namespace vfiod::itest {
namespace {

constexpr uint64_t k2M = uint64_t{2} << 20;
constexpr uint64_t kSize = 2 * k2M;

/// Takes CAP_SYS_ADMIN out of this process's bounding, inheritable,
/// permitted and effective sets, so a program it executes (even as root)
/// never has it. "" or what failed.
std::string DropSysAdmin() {
  if (::prctl(PR_CAPBSET_DROP, CAP_SYS_ADMIN, 0, 0, 0) != 0) {
    return "PR_CAPBSET_DROP failed; ";
  }
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[2]{};
  if (::syscall(SYS_capget, &header, data) != 0) {
    return "capget failed; ";
  }
  const uint32_t bit = 1U << (CAP_SYS_ADMIN % 32);
  auto& word = data[CAP_SYS_ADMIN / 32];
  word.effective &= ~bit;
  word.permitted &= ~bit;
  word.inheritable &= ~bit;
  return ::syscall(SYS_capset, &header, data) == 0 ? "" : "capset failed; ";
}

/// Whether `pid` has CAP_SYS_ADMIN in its effective set (/proc/PID/status).
bool HasSysAdmin(pid_t pid) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(status, line);) {
    if (line.rfind("CapEff:", 0) == 0) {
      return ((std::stoull(line.substr(7), nullptr, 16) >> CAP_SYS_ADMIN) & 1) != 0;
    }
  }
  return true;  // unreadable: assume the worst
}

/// dma.alloc of `backing` and its dma.info "contiguity".
json Contiguity(client::Client& c, uint64_t container, const std::string& backing, std::string& f,
                UniqueFd* fd = nullptr, uint64_t* iova = nullptr) {
  auto made = c.Call(
      "dma.alloc",
      {{"container", container}, {"size", kSize}, {"backing", backing}, {"dma_mask_bits", 28}});
  if (!made || made->fds.size() != 1) {
    f += "dma.alloc " + backing + " failed; ";
    return json();
  }
  if (fd != nullptr) {
    *fd = std::move(made->fds[0]);
    *iova = made->result["iova"];
  }
  auto info = c.Call("dma.info", {{"mapping", made->result["mapping"]}});
  if (!info) {
    f += "dma.info failed; ";
    return json();
  }
  json contiguity = info->result.value("contiguity", json());
  std::printf("%s: %s\n", backing.c_str(), contiguity.dump().c_str());
  return contiguity;
}

/// As root, in this process: a vfiod (with or without CAP_SYS_ADMIN), edu's
/// container, thp and hugetlb-2m memory described, edu through the thp one.
std::string Describe(const std::string& tmpfs, bool privileged) {
  std::string f = privileged ? "" : DropSysAdmin();
  if (!f.empty()) {
    return f;
  }
  Daemon daemon(Daemon::DefaultPolicy(), "2M", Launch::kDirect, json::object(),
                {{"thp_tmpfs", tmpfs}});
  if (HasSysAdmin(daemon.pid()) != privileged) {
    return std::string("vfiod ") + (privileged ? "lacks" : "has") + " CAP_SYS_ADMIN; ";
  }
  auto c = client::Client::Connect(daemon.socket());
  if (!c) {
    return "connect failed";
  }
  const char* edu_bdf = std::getenv("VFIOD_EDU_BDF");
  auto made = c->Call("container.create", {{"devices", {edu_bdf}}});
  if (!made) {
    return "container.create: " + made.error().Describe();
  }
  const uint64_t container = made->result["container"];
  UniqueFd thp_fd;
  uint64_t thp_iova = 0;
  json thp = Contiguity(*c, container, "thp", f, &thp_fd, &thp_iova);
  json huge = Contiguity(*c, container, "hugetlb-2m", f);
  const json two_huge = {{"4K", 0}, {"2M", 2}, {"1G", 0}};
  if (privileged) {
    if (thp.value("state", "") != "known" || thp.value("folio_source", "") != "kpageflags" ||
        thp.value("folios", json()) != two_huge || thp.value("runs", 0) == 0) {
      f += "with CAP_SYS_ADMIN the THP report is not the full one; ";
    }
  } else {
    if (thp.value("state", "") != "unknown" || thp.value("folio_source", "") != "smaps" ||
        thp.value("folios", json()) != two_huge || thp.value("runs", 1) != 0 ||
        thp.value("note", "").find("CAP_SYS_ADMIN") == std::string::npos) {
      f += "without CAP_SYS_ADMIN the THP report does not give smaps' folios; ";
    }
    if (huge.value("state", "") != "unknown" || huge.value("folio_source", "") != "backing" ||
        huge.value("folios", json()) != two_huge) {
      f += "without CAP_SYS_ADMIN the hugetlb report does not give the backing's folios; ";
    }
  }
  auto dev = c->Call("device.open", {{"container", container}, {"bdf", edu_bdf}});
  EduDevice edu;
  f += dev && dev->fds.size() == 1 ? edu.Open(dev->fds[0].get()) : "device.open failed; ";
  void* mem = ::mmap(nullptr, kSize, PROT_READ | PROT_WRITE, MAP_SHARED, thp_fd.get(), 0);
  if (f.empty() && mem != MAP_FAILED) {
    f += edu.RoundTrip(static_cast<uint8_t*>(mem), thp_iova, 2048, privileged ? 3 : 4);
  }
  if (mem != MAP_FAILED) {
    ::munmap(mem, kSize);
  }
  return f;
}

class VmContiguityTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!InVm()) {
      GTEST_SKIP() << "runs inside the test VM (tests/vm/vm_run.sh)";
    }
    ASSERT_EQ(::geteuid(), 0U) << "needs root to mount the tmpfs and start vfiod";
    std::string tmpl = "/tmp/vfiod-thp-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    tmpfs_ = tmpl;
    ASSERT_EQ(::mount("tmpfs", tmpfs_.c_str(), "tmpfs", MS_NODEV | MS_NOSUID,
                      "huge=within_size,size=0,mode=1777"),
              0)
        << "mount tmpfs: " << std::strerror(errno);
  }
  void TearDown() override {
    if (!tmpfs_.empty()) {
      ::umount2(tmpfs_.c_str(), MNT_DETACH);
      ::rmdir(tmpfs_.c_str());
    }
  }
  std::string tmpfs_;
};

TEST_F(VmContiguityTest, WithoutCapSysAdminTheReportSaysWhatNeedsNoPrivilege) {
  // Each daemon in a child: the unprivileged one's parent drops the capability.
  EXPECT_EQ(RunAs(0, 0, [&] { return Describe(tmpfs_, false); }), "");
  EXPECT_EQ(RunAs(0, 0, [&] { return Describe(tmpfs_, true); }), "");
}

}  // namespace
}  // namespace vfiod::itest
