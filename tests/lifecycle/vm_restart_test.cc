// Live restart on the real kernel, in the test VM (issue 14): vfiod runs
// under FdStoreSupervisor (the VM has no systemd) and is SIGKILLed at random
// points, idle, in the middle of a map and of a free, and stopped with
// SIGTERM (a graceful hand-over), again and again. Through all of it a
// client's edu DMA loop keeps copying through a vfiod-made mapping with the
// device fd vfiod gave it, and must never see a wrong byte. After each
// restart the named mapping is listed at the same IOVA, a KeepSession
// client gets its unnamed mapping back by itself, and the charged locked
// bytes are what the listed mappings hold. A peer-to-peer mapping of the
// ivshmem BAR (no fd of its own in the store: its device is reopened) stays
// at its IOVA through every restart, and edu's DMA still lands in that BAR at
// the end. Then the mapping is freed and the device's DMA to its IOVA is
// blocked by the IOMMU.
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/utsname.h>

#include <atomic>
#include <cstdio>
#include <fstream>
#include <optional>
#include <random>
#include <thread>

#include "daemon_harness.h"
#include "edu_bar.h"
#include "release_helpers.h"
#include "supervised_vfiod.h"
#include "support/hugepage_pool.h"

namespace vfiod::itest {
namespace {

constexpr uint64_t kBuffer = 1 << 20;
constexpr uint32_t kLen = 2048;

/// VmLck of process `pid` in bytes: what the kernel charges its mm for pins.
uint64_t LockedVm(pid_t pid) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.starts_with("VmLck:")) {
      return std::stoull(line.substr(6)) * 1024;
    }
  }
  return 0;
}

/// Clears the first `len` bytes of BAR2 of the device behind `device_fd`
/// (ivshmem's shared memory), runs `dma`, and returns those bytes after it.
/// Empty when the BAR cannot be mapped.
template <class Dma>
std::vector<uint8_t> ReadBar2(int device_fd, uint32_t len, Dma dma) {
  auto kernel = kernel::MakeLinuxKernel();
  auto bar2 = kernel::GetRegionInfo(*kernel, device_fd, kernel::kPciBar0RegionIndex + 2);
  if (!bar2 || bar2->size < len) {
    return {};
  }
  void* p = ::mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_SHARED, device_fd,
                   static_cast<off_t>(bar2->offset));
  if (p == MAP_FAILED) {
    return {};
  }
  auto* bytes = static_cast<volatile uint8_t*>(p);
  for (uint32_t i = 0; i < len; ++i) {
    bytes[i] = 0;
  }
  dma();
  std::vector<uint8_t> out(len);
  for (uint32_t i = 0; i < len; ++i) {
    out[i] = bytes[i];
  }
  ::munmap(p, len);
  return out;
}

/// A client's memory: the fd vfiod's reply carried, mapped here.
struct ClientMemory {
  uint8_t* bytes = nullptr;
  uint64_t iova = 0;
  uint64_t id = 0;
  ~ClientMemory() {
    if (bytes != nullptr) {
      ::munmap(bytes, kBuffer);
    }
  }
};

std::string MapReply(client::CallResult& reply, ClientMemory& out) {
  if (!reply) {
    return "dma.alloc: " + reply.error().Describe();
  }
  void* p = ::mmap(nullptr, kBuffer, PROT_READ | PROT_WRITE, MAP_SHARED, reply->fds.at(0).get(), 0);
  if (p == MAP_FAILED) {
    return "mmap of the allocation failed";
  }
  out.bytes = static_cast<uint8_t*>(p);
  out.iova = reply->result["iova"];
  out.id = reply->result["mapping"];
  return "";
}

/// The edu DMA loop: round trips through both buffers until told to stop.
class DmaLoop {
 public:
  DmaLoop(const EduDevice& edu, const ClientMemory& a, const ClientMemory& b)
      : thread_([this, &edu, &a, &b] {
          for (uint8_t seed = 0; !stop_; ++seed) {
            const ClientMemory& m = seed % 2 == 0 ? a : b;
            std::string f = edu.RoundTrip(m.bytes, m.iova, kLen, seed);
            if (!f.empty() && failures_.empty()) {
              failures_ = "round trip " + std::to_string(rounds_.load()) + ": " + f;
            }
            ++rounds_;
          }
        }) {}
  DmaLoop(const DmaLoop&) = delete;
  DmaLoop& operator=(const DmaLoop&) = delete;
  ~DmaLoop() { Stop(); }
  void Stop() {
    stop_ = true;
    if (thread_.joinable()) {
      thread_.join();
    }
  }
  [[nodiscard]] uint64_t rounds() const { return rounds_; }
  [[nodiscard]] const std::string& failures() const { return failures_; }  // after Stop

 private:
  std::atomic<bool> stop_ = false;
  std::atomic<uint64_t> rounds_ = 0;
  std::string failures_;
  std::thread thread_;
};

class VmRestartTest : public ::testing::Test {
 protected:
  void SetUp() override {
    bdf_ = std::getenv("VFIOD_EDU_BDF") != nullptr ? std::getenv("VFIOD_EDU_BDF") : "";
    ivshmem_ = std::getenv("VFIOD_IVSHMEM_BDF") != nullptr ? std::getenv("VFIOD_IVSHMEM_BDF") : "";
    if (!InVm() || bdf_.empty() || ivshmem_.empty() || ::geteuid() != 0) {
      GTEST_SKIP() << "runs as root inside the test VM (tests/vm/vm_run.sh)";
    }
    std::string tmpl = (fs::temp_directory_path() / "vfiod-restart-XXXXXX").string();
    dir_ = ::mkdtemp(tmpl.data());
    json config = {{"socket", {{"path", (dir_ / "unused.sock").string()}, {"group", nullptr}}},
                   {"logging", {{"level", "info"}, {"target", "stderr"}}},
                   {"kernel", "linux"},
                   {"sysfs_root", "/sys"},
                   {"limits", {{"map_chunk_bytes", "2M"}}},
                   {"device", {{"release_grace_seconds", 1}}}};
    auto daemon = SupervisedVfiod::Create(dir_, config);
    ASSERT_TRUE(daemon) << daemon.error().message();
    daemon_ = std::move(*daemon);
    ASSERT_EQ(daemon_->Start(), "");
  }
  void TearDown() override {
    daemon_.reset();
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  client::Client Connect() {
    auto c = daemon_->Connect();
    EXPECT_TRUE(c) << c.error().message();
    return std::move(*c);
  }
  /// dma.alloc's params; an empty `name`: an unnamed mapping.
  static json Alloc(uint64_t container, uint64_t size, const std::string& name) {
    json params = {
        {"container", container}, {"size", size}, {"backing", "4k"}, {"dma_mask_bits", 28}};
    if (!name.empty()) {
      params["name"] = name;
    }
    return params;
  }
  /// "" when the daemon's charge is what the mappings it lists hold, else why.
  static std::string ChargesMatchMappings(client::Client& root) {
    auto status = root.Call("status");
    auto list = root.Call("dma.list");
    if (!status || !list) {
      return "status or dma.list failed";
    }
    uint64_t held = 0;
    for (const json& m : list->result) {
      held += m["backing"] == "bar" ? 0 : m["size"].get<uint64_t>();
    }
    if (status->result["locked_bytes"] != held ||
        status->result["mappings"] != list->result.size()) {
      return "status says " + status->result["locked_bytes"].dump() + " bytes in " +
             status->result["mappings"].dump() + " mappings, dma.list " + std::to_string(held) +
             " in " + std::to_string(list->result.size());
    }
    return "";
  }

  std::string bdf_;
  std::string ivshmem_;
  fs::path dir_;
  std::unique_ptr<SupervisedVfiod> daemon_;
};

TEST_F(VmRestartTest, EduDmaRunsOnWhileVfiodIsKilledAndRestartedAtRandomPoints) {
  client::Client owner = Connect();
  auto ring = owner.Call("container.create", {{"devices", {bdf_, ivshmem_}}, {"name", "ring"}});
  ASSERT_CALL_OK(ring);
  const uint64_t container = ring->result["container"];
  auto p2p = owner.Call("dma.map_bar", {{"container", container},
                                        {"bdf", ivshmem_},
                                        {"bar", 2},
                                        {"max_iova", (1 << 28) - 1},  // edu's DMA reaches 28 bits
                                        {"name", "p2p"}});
  ASSERT_CALL_OK(p2p);
  const uint64_t p2p_id = p2p->result["mapping"];
  const uint64_t p2p_iova = p2p->result["iova"];
  ClientMemory kbuf;
  auto kbuf_reply = owner.Call("dma.alloc", Alloc(container, kBuffer, "kbuf"));
  ASSERT_EQ(MapReply(kbuf_reply, kbuf), "");
  auto device = owner.Call("device.open", {{"container", container}, {"bdf", bdf_}});
  ASSERT_CALL_OK(device);
  EduDevice edu;
  ASSERT_EQ(edu.Open(device->fds.at(0).get()), "");

  // A client that keeps its session: its unnamed mapping must come back to it.
  client::Client keeper = Connect();
  int resumes = 0;
  uint64_t resumed_mappings = 0;
  ASSERT_TRUE(keeper.KeepSession({std::chrono::seconds(60), [&](const json& r) {
                                    ++resumes;
                                    resumed_mappings +=
                                        r.is_null() ? 0 : r["mappings"].get<uint64_t>();
                                  }}));
  ClientMemory scratch;
  auto scratch_reply = keeper.Call("dma.alloc", Alloc(container, kBuffer, ""));
  ASSERT_EQ(MapReply(scratch_reply, scratch), "");
  // The keeper's registered hugetlb region (charged whole) and an unnamed
  // slice of it: both must come back to it, the region under its id.
  constexpr uint64_t kHuge = 2 << 20;
  UniqueFd huge(testing::HugepagePool2M::Memfd(kHuge));
  ASSERT_TRUE(huge.valid()) << "no 2 MiB hugetlbfs memfd";
  const int huge_fds[] = {huge.get()};
  auto registered = keeper.Call("dma.register", {{"fd", {{"fd", 0}}}}, huge_fds);
  ASSERT_CALL_OK(registered);
  const uint64_t region = registered->result["region"];
  auto slice = keeper.Call(
      "dma.map_fd",
      {{"container", container}, {"region", region}, {"size", kHuge}, {"dma_mask_bits", 28}});
  ASSERT_CALL_OK(slice);
  const uint64_t slice_iova = slice->result["iova"];
  const uint64_t slice_id = slice->result["mapping"];

  DmaLoop loop(edu, kbuf, scratch);
  const unsigned seed = std::random_device{}();
  std::mt19937 rng(seed);
  SCOPED_TRACE("random seed " + std::to_string(seed));
  constexpr int kRounds = 8;
  for (int round = 0; round < kRounds; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    const int kind = round % 4;  // idle kill, mid-map kill, mid-free kill, SIGTERM
    // The interrupted request's client connects first, so its call reaches
    // this vfiod (not the next one) and ends when this one dies.
    std::thread work;
    std::optional<client::Client> worker;
    if (kind == 1 || kind == 2) {
      worker.emplace(Connect());
    }
    if (kind == 1) {
      work = std::thread([&worker, container, round] {
        (void)worker->Call("dma.alloc", Alloc(container, 64 << 20, "big" + std::to_string(round)));
      });
    } else if (kind == 2) {
      auto tmp =
          worker->Call("dma.alloc", Alloc(container, 32 << 20, "tmp" + std::to_string(round)));
      ASSERT_CALL_OK(tmp);
      const uint64_t id = tmp->result["mapping"];
      work = std::thread([&worker, id] { (void)worker->Call("dma.free", {{"mapping", id}}); });
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(rng() % (kind == 0 ? 300 : 120)));
    const pid_t old_pid = daemon_->pid();
    const uint64_t vmlck_before = LockedVm(old_pid);
    const uint64_t rounds_at_kill = loop.rounds();
    daemon_->Kill(kind == 3 ? SIGTERM : SIGKILL);
    if (work.joinable()) {
      work.join();
    }
    ASSERT_EQ(daemon_->Start(), "");
    EXPECT_GT(loop.rounds(), rounds_at_kill) << "the DMA loop stalled while vfiod was down";

    client::Client root = Connect();
    auto info = root.Call("dma.info", {{"mapping", kbuf.id}});
    ASSERT_CALL_OK(info);
    EXPECT_EQ(info->result["iova"], kbuf.iova);
    EXPECT_EQ(info->result["name"], "kbuf");
    auto bar_info = root.Call("dma.info", {{"mapping", p2p_id}});
    ASSERT_CALL_OK(bar_info);
    EXPECT_EQ(bar_info->result["iova"], p2p_iova);
    // The keeper's next call finds the connection gone, reconnects, resumes
    // and is sent again (dma.info only reads).
    auto again = keeper.Call("dma.info", {{"mapping", scratch.id}});
    ASSERT_CALL_OK(again);
    EXPECT_EQ(again->result["iova"], scratch.iova);
    EXPECT_EQ(resumes, round + 1);
    auto regions = keeper.Call("dma.regions");
    ASSERT_CALL_OK(regions);
    ASSERT_EQ(regions->result.size(), 1U);
    EXPECT_EQ(regions->result[0]["region"], region);
    // Whatever the interrupted map or free left: listed and charged alike,
    // then freed so every round starts from the same two mappings.
    EXPECT_EQ(ChargesMatchMappings(root), "");
    auto list = root.Call("dma.list");
    ASSERT_CALL_OK(list);
    for (const json& m : list->result) {
      if (m["mapping"] != kbuf.id && m["mapping"] != scratch.id && m["mapping"] != p2p_id &&
          m["mapping"] != slice_id) {
        ASSERT_CALL_OK(root.Call("dma.free", {{"mapping", m["mapping"]}}));
      }
    }
    auto status = root.Call("status");
    ASSERT_CALL_OK(status);
    EXPECT_EQ(status->result["locked_bytes"], 2 * kBuffer + kHuge);  // the region: once
    EXPECT_EQ(status->result["restart"]["fd_store"], true);
    // The kernel's locked-memory charge of the new process: never twice the
    // pins (how a kernel moves the charge with the VADDR protocol differs).
    const uint64_t vmlck_after = LockedVm(daemon_->pid());
    EXPECT_LE(vmlck_after, status->result["locked_bytes"].get<uint64_t>());
    std::printf("round %d (%s): VmLck %llu KiB before, %llu KiB after; %llu DMA round trips\n",
                round,
                kind == 0   ? "idle kill"
                : kind == 1 ? "kill mid-map"
                : kind == 2 ? "kill mid-free"
                            : "SIGTERM",
                static_cast<unsigned long long>(vmlck_before >> 10),
                static_cast<unsigned long long>(vmlck_after >> 10),
                static_cast<unsigned long long>(loop.rounds()));
  }
  loop.Stop();
  EXPECT_EQ(loop.failures(), "");
  EXPECT_EQ(resumed_mappings, static_cast<uint64_t>(2 * kRounds));  // scratch and the slice
  utsname u{};
  ::uname(&u);
  std::printf("kernel %s: %llu DMA round trips, all correct\n", u.release,
              static_cast<unsigned long long>(loop.rounds()));

  // The slice after all the restarts: the device reads the region's memory.
  {
    void* p = ::mmap(nullptr, kHuge, PROT_READ | PROT_WRITE, MAP_SHARED, huge.get(), 0);
    ASSERT_NE(p, MAP_FAILED);
    auto* bytes = static_cast<uint8_t*>(p);
    for (uint32_t i = 0; i < kLen; ++i) {
      bytes[i] = static_cast<uint8_t>(i * 5 + 1);
    }
    std::memset(kbuf.bytes, 0, kLen);
    EXPECT_EQ(edu.bar().Dma(slice_iova, kEduBuffer, kLen, false), "");
    EXPECT_EQ(edu.bar().Dma(kEduBuffer, kbuf.iova, kLen, true), "");
    EXPECT_EQ(std::memcmp(kbuf.bytes, bytes, kLen), 0) << "the slice did not reach the device";
    ::munmap(p, kHuge);
  }

  // Peer to peer after all the restarts: edu writes into the ivshmem BAR
  // through the taken-over mapping, read back through ivshmem's own BAR.
  client::Client root = Connect();
  auto ivshmem = root.Call("device.open", {{"container", container}, {"bdf", ivshmem_}});
  ASSERT_CALL_OK(ivshmem);
  const std::vector<uint8_t> seen = ReadBar2(ivshmem->fds.at(0).get(), kLen, [&] {
    for (uint32_t i = 0; i < kLen; ++i) {
      kbuf.bytes[i] = static_cast<uint8_t>(i * 7 + 3);
    }
    EXPECT_EQ(edu.bar().Dma(kbuf.iova, kEduBuffer, kLen, false), "");
    EXPECT_EQ(edu.bar().Dma(kEduBuffer, p2p_iova, kLen, true), "");
  });
  ASSERT_EQ(seen.size(), kLen);
  for (uint32_t i = 0; i < kLen; ++i) {
    ASSERT_EQ(seen[i], static_cast<uint8_t>(i * 7 + 3)) << "BAR byte " << i;
  }

  // Freed after all the restarts: the device's DMA to that IOVA is blocked.
  ASSERT_CALL_OK(root.Call("dma.free", {{"mapping", kbuf.id}}));
  std::memset(kbuf.bytes, 0x11, kLen);
  ASSERT_EQ(edu.bar().Dma(scratch.iova, kEduBuffer, kLen, false),
            "");  // device buffer: scratch's bytes
  ASSERT_EQ(edu.bar().Dma(kEduBuffer, kbuf.iova, kLen, true), "");
  for (uint32_t i = 0; i < kLen; ++i) {
    ASSERT_EQ(kbuf.bytes[i], 0x11) << "the device wrote through a freed IOVA at byte " << i;
  }
}

// A kernel request to release a device a client holds still reaches that
// client after restarts: the device fd vfiod held comes back from the fd
// store (not reopened) and its request IRQ is armed again, after a SIGKILL
// (the dead vfiod's eventfd is replaced) and after a graceful hand-over
// (which disarmed it). The client closes its fd on the notice, vfiod revokes
// the container after the grace period, and the real unbind completes.
TEST_F(VmRestartTest, AReleaseRequestAfterRestartsReachesTheClientHoldingTheDevice) {
  client::Client owner = Connect();
  auto made = owner.Call("container.create", {{"devices", {bdf_}}, {"name", "held"}});
  ASSERT_CALL_OK(made);
  const uint64_t container = made->result["container"];
  ClientMemory buf;
  auto buf_reply = owner.Call("dma.alloc", Alloc(container, kBuffer, "buf"));
  ASSERT_EQ(MapReply(buf_reply, buf), "");
  auto device = owner.Call("device.open", {{"container", container}, {"bdf", bdf_}});
  ASSERT_CALL_OK(device);
  UniqueFd fd = std::move(device->fds.at(0));
  std::optional<EduDevice> edu(std::in_place);
  ASSERT_EQ(edu->Open(fd.get()), "");
  for (int signo : {SIGKILL, SIGTERM}) {
    daemon_->Kill(signo);
    ASSERT_EQ(daemon_->Start(), "");
  }
  ASSERT_EQ(edu->RoundTrip(buf.bytes, buf.iova, kLen, 3), "");  // still its device and memory

  client::Client holder = Connect();  // the owner's uid, on the new vfiod
  client::DeviceReleaser releaser([&](const client::ReleaseNotice&) { edu.reset(); });
  releaser.Keep(bdf_, std::move(fd));
  holder.OnNotification(releaser.Handler());
  auto status = holder.Call("status");
  ASSERT_CALL_OK(status);
  Unbind unbind(bdf_);
  auto asked = AwaitNotice(holder, releaser, false);
  ASSERT_TRUE(asked) << "no device.release_requested from the restarted vfiod";
  EXPECT_EQ(asked->bdf, bdf_);
  EXPECT_EQ(asked->container, container);
  EXPECT_EQ(releaser.fd(bdf_), -1);  // the library closed the client's fd
  EXPECT_FALSE(edu);
  auto revoked = AwaitNotice(holder, releaser, true);
  ASSERT_TRUE(revoked) << "no device.revoked";
  EXPECT_EQ(revoked->container, container);
  EXPECT_EQ(unbind.Await(), "");  // nothing holds the device any more
  EXPECT_TRUE(BindBack(bdf_));
}

}  // namespace
}  // namespace vfiod::itest
