// Inside the test VM (VFIOD_IN_VM=1, real kernel, edu bound to vfio-pci): a
// process running as uid 65534, with no access of its own to /dev/vfio, gets
// the edu device fd and a DMA buffer from vfiod only, and drives an edu DMA
// round trip with them: the bytes it wrote into the buffer come back through
// the device, which proves the IOMMU mapping vfiod made is the client's memory.
// The same again through a registered region: a slice, and a two-piece
// scatter list the device reads across the boundary of its pieces. And through
// files opened by path on tmpfs and hugetlbfs, which the client then punches
// and truncates under the live mapping.
//
// The edu registers are driven straight through the device fd the client
// received (regions located with VFIO_DEVICE_GET_REGION_INFO through the kernel
// seam, BAR0 mmap'd, bus mastering set in config space): the client has no
// group or container of its own, so it cannot use the vfio layer's Device.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>

#include <cstring>
#include <thread>

#include "as_user.h"
#include "daemon_harness.h"
#include "edu_bar.h"
#include "kernel/kernel.h"
#include "kernel/vfio_api.h"
#include "support/hugepage_pool.h"

namespace vfiod::itest {
namespace {

using ::vfiod::testing::HugepagePool2M;

constexpr uint64_t k2M = 2 << 20;

/// Bytes [0, len) of a pattern that differs per `seed`.
void Fill(uint8_t* p, uint32_t len, uint8_t seed) {
  for (uint32_t i = 0; i < len; ++i) {
    p[i] = static_cast<uint8_t>(i * 13 + seed);
  }
}

/// The same round trip through client memory that never came from dma.alloc:
/// a memfd registered once as a region, a slice of it, and a two-piece
/// scatter list read by the device across the boundary of its pieces (which
/// are 128 KiB apart in the file and back to back in IOVA).
std::string DriveEduThroughRegion(client::Client& c, uint64_t container, const Bar0& edu) {
  constexpr uint64_t kSize = 1 << 20;
  UniqueFd memfd(::memfd_create("edu-region", MFD_CLOEXEC | MFD_ALLOW_SEALING));
  if (!memfd || ::ftruncate(memfd.get(), kSize) != 0) {
    return "memfd failed; ";
  }
  const int fds[] = {memfd.get()};
  auto region = c.Call("dma.register", {{"fd", {{"fd", 0}}}}, fds);
  if (!region) {
    return "dma.register: " + region.error().Describe();
  }
  const json id = region->result["region"];
  auto slice = c.Call("dma.map_fd", {{"container", container},
                                     {"region", id},
                                     {"offset", 0x10000},
                                     {"size", 0x4000},
                                     {"dma_mask_bits", 28}});
  json two = json::array(
      {{{"offset", 0x20000}, {"size", 0x1000}}, {{"offset", 0x40000}, {"size", 0x1000}}});
  auto scatter =
      c.Call("dma.map_fd",
             {{"container", container}, {"region", id}, {"segments", two}, {"dma_mask_bits", 28}});
  if (!slice || !scatter) {
    return "dma.map_fd of the region: " + (slice ? scatter : slice).error().Describe();
  }
  void* mem = ::mmap(nullptr, kSize, PROT_READ | PROT_WRITE, MAP_SHARED, memfd.get(), 0);
  if (mem == MAP_FAILED) {
    return "mmap of the memfd failed; ";
  }
  auto* bytes = static_cast<uint8_t*>(mem);
  std::string f;
  const uint64_t slice_iova = slice->result["iova"];
  const uint32_t len = 2048;
  Fill(bytes + 0x10000, len, 5);
  std::memset(bytes + 0x12000, 0, len);
  f += edu.Dma(slice_iova, kEduBuffer, len, false);
  f += edu.Dma(kEduBuffer, slice_iova + 0x2000, len, true);
  if (std::memcmp(bytes + 0x10000, bytes + 0x12000, len) != 0) {
    f += "the region slice did not round-trip through the device; ";
  }
  // The last 1 KiB of piece 0 and the first 1 KiB of piece 1, as one read.
  const uint64_t boundary = scatter->result["segments"][1]["iova"];
  Fill(bytes + 0x21000 - len / 2, len / 2, 9);
  Fill(bytes + 0x40000, len / 2, 77);
  std::memset(bytes + 0x12000, 0, len);
  f += edu.Dma(boundary - len / 2, kEduBuffer, len, false);
  f += edu.Dma(kEduBuffer, slice_iova + 0x2000, len, true);
  if (std::memcmp(bytes + 0x12000, bytes + 0x21000 - len / 2, len / 2) != 0 ||
      std::memcmp(bytes + 0x12000 + len / 2, bytes + 0x40000, len / 2) != 0) {
    f += "the scatter list did not read back across its segment boundary; ";
  }
  ::munmap(mem, kSize);
  for (const auto* m : {&slice, &scatter}) {
    if (!c.Call("dma.free", {{"mapping", (*m)->result["mapping"]}})) {
      f += "dma.free failed; ";
    }
  }
  return f;
}

/// A client file opened by path (sealing locked, as DPDK and QEMU make them)
/// mapped with dma.map_fd: an edu round trip through it, then the client
/// punches a hole in it and truncates it to nothing under the live mapping.
/// vfiod must keep serving, free the mapping cleanly and give back what it
/// charged. `dir` is /dev/shm (tmpfs) or /dev/hugepages (2 MiB hugetlbfs).
std::string DriveEduThroughFileByPath(client::Client& c, uint64_t container, const EduDevice& edu,
                                      const std::string& dir) {
  constexpr uint64_t kSize = 2 << 20;
  const std::string path = dir + "/vfiod-edu-" + std::to_string(::getpid());
  UniqueFd file(::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
  ::unlink(path.c_str());
  if (!file || ::ftruncate(file.get(), kSize) != 0) {
    return path + ": " + std::strerror(errno) + "; ";
  }
  auto before = c.Call("status");
  const int fds[] = {file.get()};
  auto mapped = c.Call(
      "dma.map_fd",
      {{"container", container}, {"fd", {{"fd", 0}}}, {"size", kSize}, {"dma_mask_bits", 28}}, fds);
  if (!before || !mapped) {
    return path + ": dma.map_fd: " + (mapped ? before : mapped).error().Describe() + "; ";
  }
  std::string f;
  void* mem = ::mmap(nullptr, kSize, PROT_READ | PROT_WRITE, MAP_SHARED, file.get(), 0);
  if (mem == MAP_FAILED) {
    return path + ": mmap failed; ";
  }
  f += edu.RoundTrip(static_cast<uint8_t*>(mem), mapped->result["iova"], 2048, 11);
  ::munmap(mem, kSize);  // a truncated file would SIGBUS the client's own view
  const bool hugetlb = dir == "/dev/hugepages";
  const off_t hole = hugetlb ? static_cast<off_t>(kSize) : 4096;
  if (::fallocate(file.get(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, hole) != 0 ||
      ::ftruncate(file.get(), 0) != 0) {
    f += path + ": punching or truncating failed: " + std::strerror(errno) + "; ";
  }
  if (!c.Call("ping")) {
    f += path + ": vfiod stopped answering after the truncation; ";
  }
  if (auto freed = c.Call("dma.free", {{"mapping", mapped->result["mapping"]}}); !freed) {
    f += path + ": dma.free: " + freed.error().Describe() + "; ";
  }
  auto after = c.Call("status");
  if (!after || after->result["locked_bytes"] != before->result["locked_bytes"] ||
      after->result["mappings"] != before->result["mappings"]) {
    f += path + ": status not back: " + before->result.dump() + " -> " +
         (after ? after->result.dump() : after.error().Describe()) + "; ";
  }
  return f;
}

/// `thp` memory on a default Debian guest (shmem_enabled "never"): vfiod's
/// own huge tmpfs makes it all PMD-sized folios, as its report says (root
/// vfiod reads them from pagemap and kpageflags), and edu DMA goes through it.
std::string DriveEduThroughThp(client::Client& c, uint64_t container, const EduDevice& edu) {
  constexpr uint64_t kSize = 8 << 20;
  auto thp = c.Call("dma.alloc", {{"container", container},
                                  {"size", kSize},
                                  {"backing", "thp"},
                                  {"dma_mask_bits", 28},
                                  {"require", "thp"}});
  if (!thp || thp->fds.size() != 1) {
    return "dma.alloc thp: " + (thp ? std::string("no fd") : thp.error().Describe()) + "; ";
  }
  std::string f;
  const json huge = thp->result.value("huge", json::object());
  if (huge.value("huge_bytes", 0) != kSize || huge.value("bytes", 0) != kSize) {
    f += "require thp: the reply's huge share is not all of it: " + huge.dump() + "; ";
  }
  auto info = c.Call("dma.info", {{"mapping", thp->result["mapping"]}});
  const json contiguity = info ? info->result.value("contiguity", json::object()) : json::object();
  const json folios = contiguity.value("folios", json::object());
  if (contiguity.value("state", "") != "known" || folios.value("2M", 0) != kSize >> 21 ||
      folios.value("4K", 1) != 0) {
    f += "thp is not all 2 MiB folios: " + contiguity.dump() + "; ";
  }
  void* mem = ::mmap(nullptr, kSize, PROT_READ | PROT_WRITE, MAP_SHARED, thp->fds[0].get(), 0);
  if (mem == MAP_FAILED) {
    return f + "mmap of the thp buffer failed; ";
  }
  f += edu.RoundTrip(static_cast<uint8_t*>(mem) + k2M, thp->result["iova"].get<uint64_t>() + k2M,
                     2048, 21);
  ::munmap(mem, kSize);
  if (!c.Call("dma.free", {{"mapping", thp->result["mapping"]}})) {
    f += "dma.free of the thp buffer failed; ";
  }
  return f;
}

/// `"require": "thp"` on client files: a 2 MiB hugetlbfs file passes and says
/// so; a file on /dev/shm (tmpfs mounted huge=never: 4 KiB pages) is refused
/// with ENOMEM and leaves nothing mapped or charged.
std::string RequireThpOnClientFiles(client::Client& c, uint64_t container) {
  constexpr uint64_t kSize = 2 << 20;
  std::string f;
  for (const std::string dir : {"/dev/hugepages", "/dev/shm"}) {
    const std::string path = dir + "/vfiod-require-" + std::to_string(::getpid());
    UniqueFd file(::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
    ::unlink(path.c_str());
    if (!file || ::ftruncate(file.get(), kSize) != 0) {
      f += path + ": " + std::strerror(errno) + "; ";
      continue;
    }
    auto before = c.Call("status");
    const int fds[] = {file.get()};
    auto mapped = c.Call(
        "dma.map_fd",
        {{"container", container}, {"fd", {{"fd", 0}}}, {"size", kSize}, {"require", "thp"}}, fds);
    auto after = c.Call("status");
    if (dir == "/dev/hugepages") {
      const json huge = mapped ? mapped->result.value("huge", json::object()) : json();
      if (!mapped || huge.value("huge_bytes", 0) != kSize) {
        f += path + ": require thp: " + (mapped ? huge.dump() : mapped.error().Describe()) + "; ";
      }
      if (mapped && !c.Call("dma.free", {{"mapping", mapped->result["mapping"]}})) {
        f += path + ": dma.free failed; ";
      }
    } else if (mapped || !mapped.error().data.is_object() ||
               mapped.error().data.value("errno_name", "") != "ENOMEM") {
      f += path + ": require thp on 4 KiB pages was not refused with ENOMEM: " +
           (mapped ? mapped->result.dump() : mapped.error().Describe()) + "; ";
    } else if (!before || !after ||
               before->result["locked_bytes"] != after->result["locked_bytes"] ||
               before->result["mappings"] != after->result["mappings"]) {
      f += path + ": a refused require thp left something mapped or charged; ";
    }
  }
  return f;
}

/// The client side: everything from vfiod, as uid 65534.
std::string DriveEduAsClient(const std::string& socket, const std::string& bdf) {
  auto c = client::Client::Connect(socket);
  if (!c) {
    return "connect: " + c.error().message();
  }
  if (::access("/dev/vfio/vfio", R_OK | W_OK) == 0) {
    // Not a failure of vfiod, but the test would prove less: say so.
    std::fprintf(stderr, "note: uid %u can open /dev/vfio/vfio itself\n", ::getuid());
  }
  auto made = c->Call("container.create", {{"devices", {bdf}}});
  if (!made) {
    return "container.create: " + made.error().Describe();
  }
  uint64_t container = made->result["container"];
  auto dev = c->Call("device.open", {{"container", container}, {"bdf", bdf}});
  if (!dev || dev->fds.size() != 1) {
    return "device.open: " + (dev ? std::string("no fd") : dev.error().Describe());
  }
  auto buf = c->Call(
      "dma.alloc",
      {{"container", container}, {"size", 1 << 20}, {"backing", "4k"}, {"dma_mask_bits", 28}});
  if (!buf || buf->fds.size() != 1) {
    return "dma.alloc: " + (buf ? std::string("no fd") : buf.error().Describe());
  }
  const uint64_t iova = buf->result["iova"];
  EduDevice edu;
  std::string f = edu.Open(dev->fds[0].get());
  if (!f.empty()) {
    return f;
  }
  void* mem = ::mmap(nullptr, 1 << 20, PROT_READ | PROT_WRITE, MAP_SHARED, buf->fds[0].get(), 0);
  if (mem == MAP_FAILED) {
    return f + "mmap of the DMA buffer failed";
  }
  f += edu.RoundTrip(static_cast<uint8_t*>(mem), iova, 2048, 3);
  ::munmap(mem, 1 << 20);
  f += DriveEduThroughThp(*c, container, edu);
  f += RequireThpOnClientFiles(*c, container);
  f += DriveEduThroughRegion(*c, container, edu.bar());
  for (const char* dir : {"/dev/shm", "/dev/hugepages"}) {
    f += DriveEduThroughFileByPath(*c, container, edu, dir);
  }
  auto freed = c->Call("container.destroy", {{"container", container}});
  if (!freed) {
    f += "container.destroy: " + freed.error().Describe();
  }
  return f;
}

TEST(VmEduTest, NonRootClientDrivesEduDmaWithWhatVfiodGaveIt) {
  const char* bdf = std::getenv("VFIOD_EDU_BDF");
  if (!InVm() || bdf == nullptr) {
    GTEST_SKIP() << "runs inside the test VM (tests/vm/vm_run.sh), VFIOD_EDU_BDF unset";
  }
  if (::geteuid() != 0) {
    GTEST_SKIP() << "needs root to start vfiod and drop the client to uid 65534";
  }
  json policy = {{"rules", json::array({{{"users", json::array({kNobody})},
                                         {"devices", json::array({bdf})}}})}};
  // One 2 MiB page for the hugetlbfs file (the pin and the client's view
  // share it); vfiod must give it back to the pool.
  HugepagePool2M pool(1);
  ASSERT_TRUE(pool.ok()) << "cannot reserve a 2 MiB hugepage in the VM";
  const uint64_t free_pages = HugepagePool2M::Free();
  Daemon daemon(policy, "1G");
  std::string failures =
      RunAs(kNobody, kNobody, [&] { return DriveEduAsClient(daemon.socket(), bdf); });
  EXPECT_EQ(failures, "");
  client::Client root = daemon.Connect();
  json status;
  for (int i = 0; i < 500; ++i) {
    auto s = root.Call("status");
    ASSERT_TRUE(s.has_value());
    status = s->result;
    if (status["clients"] == 1) {
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(status["kernel"], "linux");
  EXPECT_EQ(status["containers"], 0);
  EXPECT_EQ(status["locked_bytes"], 0);
  EXPECT_EQ(HugepagePool2M::Free(), free_pages) << "a hugepage stayed pinned";
  EXPECT_EQ(daemon.Stop(), 0);
}

}  // namespace
}  // namespace vfiod::itest
