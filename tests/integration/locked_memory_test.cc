// Locked memory against the real vfiod binary: the daemon-wide cap
// (limits.max_locked_bytes) holds every client, root included, and a
// hugetlbfs file an unprivileged client registers is charged to its quota
// from dma.register until vfiod lets go of the pages, its slices charging
// nothing more. On the host the daemon runs on the model kernel with real
// 2 MiB pages of the host's pool (raised for the test); in the VM
// (VmLockedMemoryTest) the same scenario runs on the real kernel.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>

#include "as_user.h"
#include "daemon_harness.h"
#include "forked_client.h"
#include "proto/errors.h"
#include "support/hugepage_pool.h"

namespace vfiod::itest {
namespace {

using ::testing::HasSubstr;
using ::vfiod::testing::HugepagePool2M;

constexpr uint64_t k2M = 2 << 20;

json StatusOf(client::Client& c) {
  auto s = c.Call("status");
  return s ? s->result : json();
}

/// "" when `r` failed with `code` and a detail containing `detail`.
std::string ExpectRefused(const client::CallResult& r, int code, const std::string& detail,
                          const std::string& what) {
  if (CodeOf(r) != code || DetailOf(r).find(detail) == std::string::npos) {
    return what + ": expected " + std::to_string(code) + " naming '" + detail + "', got " +
           (r ? r->result.dump() : r.error().Describe()) + "; ";
  }
  return "";
}

/// Runs as an unprivileged client of `socket` with a 4 MiB quota on `bdf`:
/// registers a 4 MiB hugetlbfs memfd and checks the charge from the
/// daemon's side. Returns "" or what went wrong.
std::string RegisterHugetlbAsClient(const std::string& socket, const std::string& bdf) {
  auto conn = client::Client::Connect(socket);
  if (!conn) {
    return "connect: " + conn.error().message();
  }
  client::Client& c = *conn;
  std::string f;
  auto container = c.Call("container.create", {{"devices", {bdf}}});
  if (!container) {
    return "container.create: " + container.error().Describe();
  }
  const uint64_t cid = container->result["container"];
  UniqueFd file(HugepagePool2M::Memfd(2 * k2M));
  if (!file.valid()) {
    return "no 2 MiB hugetlbfs memfd for the client";
  }
  const int fds[] = {file.get()};
  auto reg = c.Call("dma.register", {{"fd", {{"fd", 0}}}}, fds);
  if (!reg) {
    return "dma.register: " + reg.error().Describe();
  }
  file = UniqueFd();  // vfiod's reference is now the only one
  const uint64_t region = reg->result["region"];
  if (reg->result["backing"] != "hugetlb-2m") {
    f += "backing " + reg->result["backing"].dump() + "; ";
  }
  json s = StatusOf(c);
  if (s["region_locked_bytes"] != 2 * k2M || s["locked_bytes"] != 2 * k2M) {
    f += "after register: " + s.dump() + "; ";
  }
  // The quota (4 MiB) is spent by the registration: a 4 KiB alloc is refused.
  f += ExpectRefused(c.Call("dma.alloc", {{"container", cid}, {"size", 4096}, {"backing", "4k"}}),
                     wire::kQuotaExceeded, "locked_bytes", "dma.alloc past the quota");
  // A second region past the quota is refused at dma.register.
  UniqueFd second(HugepagePool2M::Memfd(k2M));
  const int second_fds[] = {second.get()};
  f += ExpectRefused(c.Call("dma.register", {{"fd", {{"fd", 0}}}}, second_fds),
                     wire::kQuotaExceeded, "locked_bytes", "second region");
  // Slices are the region's pages: mapped without a further charge.
  auto slice = c.Call("dma.map_fd", {{"container", cid}, {"region", region}, {"size", 2 * k2M}});
  if (!slice) {
    return f + "dma.map_fd {region}: " + slice.error().Describe();
  }
  s = StatusOf(c);
  if (s["locked_bytes"] != 2 * k2M || s["mappings"] != 1) {
    f += "after the slice: " + s.dump() + "; ";
  }
  // Unregistered while mapped: the mapping holds the pages, the charge stays.
  if (auto u = c.Call("dma.unregister", {{"region", region}}); !u) {
    f += "dma.unregister: " + u.error().Describe() + "; ";
  }
  if (StatusOf(c)["region_locked_bytes"] != 2 * k2M) {
    f += "after unregister: " + StatusOf(c).dump() + "; ";
  }
  auto freed = c.Call("dma.free", {{"mapping", slice->result["mapping"]}});
  if (!freed) {
    f += "dma.free: " + freed.error().Describe() + "; ";
  }
  s = StatusOf(c);
  if (s["region_locked_bytes"] != 0 || s["locked_bytes"] != 0) {
    f += "after the free: " + s.dump() + "; ";
  }
  // Registered again and left for the session close to release.
  UniqueFd third(HugepagePool2M::Memfd(k2M));
  const int third_fds[] = {third.get()};
  if (auto r = c.Call("dma.register", {{"fd", {{"fd", 0}}}}, third_fds); !r) {
    f += "third region: " + r.error().Describe() + "; ";
  }
  return f;
}

/// The scenario, as root: the daemon, the pool, a client at uid 65534.
void HugetlbRegisterScenario(const std::string& bdf) {
  HugepagePool2M pool(4);
  if (!pool.ok()) {
    GTEST_SKIP() << "cannot reserve 2 MiB hugepages (needs root and free memory)";
  }
  const uint64_t free_before = HugepagePool2M::Free();
  json policy = {{"rules", json::array({{{"users", json::array({kNobody})},
                                         {"devices", json::array({bdf})},
                                         {"quota", {{"locked_bytes", "4M"}, {"mappings", 2}}}}})}};
  Daemon daemon(policy, "2M");
  EXPECT_EQ(RunAs(kNobody, kNobody, [&] { return RegisterHugetlbAsClient(daemon.socket(), bdf); }),
            "");
  client::Client root = daemon.Connect();
  // The session's regions are released after it leaves the table (the
  // munmap of a region's view runs off the registry lock), so the charge may
  // outlive "clients == 1" by that munmap: wait for both.
  json s = AwaitStatus([&] { return StatusOf(root); },
                       [](const json& j) { return j["clients"] == 1 && j["locked_bytes"] == 0; });
  EXPECT_EQ(s["locked_bytes"], 0) << s.dump();
  EXPECT_EQ(s["region_locked_bytes"], 0) << s.dump();
  EXPECT_EQ(HugepagePool2M::Free(), free_before);  // vfiod let go of every page
  EXPECT_EQ(daemon.Stop(), 0) << ReadAll(daemon.log_path());
}

TEST(LockedMemoryItest, CapHoldsEveryClientRootIncluded) {
  if (InVm()) {
    GTEST_SKIP() << "model-kernel scenario";
  }
  if (::geteuid() != 0) {
    GTEST_SKIP() << "needs root to drop a client to uid 65534";
  }
  Daemon daemon(Daemon::DefaultPolicy(), "2M", Launch::kDirect, {{"max_locked_bytes", "6M"}});
  client::Client root = daemon.Connect();
  EXPECT_EQ(StatusOf(root)["max_locked_bytes"], 6 << 20);
  auto rc = root.Call("container.create", {{"devices", {kIvshmem}}});
  ASSERT_CALL_OK(rc);
  auto big = root.Call(
      "dma.alloc", {{"container", rc->result["container"]}, {"size", 4 << 20}, {"backing", "4k"}});
  ASSERT_CALL_OK(big);
  // uid 65534 has a 4 MiB quota of its own, but only 2 MiB of the cap are left.
  std::string failures = RunAs(kNobody, kNobody, [&] {
    client::Client c = daemon.Connect();
    auto uc = c.Call("container.create", {{"devices", {kEdu}}});
    if (!uc) {
      return "container.create: " + uc.error().Describe();
    }
    const uint64_t cid = uc->result["container"];
    std::string f = ExpectRefused(
        c.Call("dma.alloc", {{"container", cid}, {"size", 4 << 20}, {"backing", "4k"}}),
        wire::kQuotaExceeded, "limits.max_locked_bytes", "4M alloc");
    if (auto ok = c.Call("dma.alloc", {{"container", cid}, {"size", k2M}, {"backing", "4k"}});
        !ok) {
      f += "2M alloc: " + ok.error().Describe() + "; ";
    }
    if (StatusOf(c)["locked_bytes"] != k2M) {  // a user's status: its own figures
      f += "status: " + StatusOf(c).dump() + "; ";
    }
    return f;
  });
  EXPECT_EQ(failures, "");
  // The child's session closed: its 2 MiB came back, and root may use them.
  json s = AwaitStatus([&] { return StatusOf(root); },
                       [](const json& j) { return j["locked_bytes"] == 4 << 20; });
  EXPECT_EQ(s["locked_bytes"], 4 << 20);
  auto more = root.Call("dma.alloc",
                        {{"container", rc->result["container"]}, {"size", k2M}, {"backing", "4k"}});
  ASSERT_CALL_OK(more);
  auto capped = root.Call(
      "dma.alloc", {{"container", rc->result["container"]}, {"size", 4096}, {"backing", "4k"}});
  EXPECT_EQ(CodeOf(capped), wire::kQuotaExceeded);
  EXPECT_THAT(DetailOf(capped), HasSubstr("limits.max_locked_bytes"));
  EXPECT_EQ(StatusOf(root)["locked_bytes"], 6 << 20);
  EXPECT_EQ(daemon.Stop(), 0) << ReadAll(daemon.log_path());
}

TEST(LockedMemoryItest, DefaultCapIsAShareOfMemTotal) {
  if (InVm()) {
    GTEST_SKIP() << "model-kernel scenario";
  }
  Daemon daemon;
  client::Client c = daemon.Connect();
  const json cap = StatusOf(c)["max_locked_bytes"];
  ASSERT_TRUE(cap.is_number_unsigned()) << cap.dump();
  std::ifstream meminfo("/proc/meminfo");
  std::string key;
  uint64_t kib = 0;
  meminfo >> key >> kib;
  ASSERT_EQ(key, "MemTotal:");
  EXPECT_EQ(cap.get<uint64_t>(), (kib << 10) / 4 * 3);
}

TEST(LockedMemoryItest, HugetlbRegionIsChargedToAnUnprivilegedClient) {
  if (InVm()) {
    GTEST_SKIP() << "model-kernel scenario; the VM runs VmLockedMemoryTest";
  }
  if (::geteuid() != 0) {
    GTEST_SKIP() << "needs root to drop a client to uid 65534 and raise the hugepage pool";
  }
  HugetlbRegisterScenario(kEdu);
}

TEST(VmLockedMemoryTest, HugetlbRegionIsChargedToAnUnprivilegedClient) {
  const char* bdf = std::getenv("VFIOD_EDU_BDF");
  if (!InVm() || bdf == nullptr) {
    GTEST_SKIP() << "runs inside the test VM (tests/vm/vm_run.sh), VFIOD_EDU_BDF unset";
  }
  HugetlbRegisterScenario(bdf);
}

}  // namespace
}  // namespace vfiod::itest
