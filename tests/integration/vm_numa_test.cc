// Inside the two-node test VM (vm_run.sh with VFIOD_VM_NUMA=1: node 1 holds
// a PCIe expander bridge with a second edu behind it): DMA memory comes from
// the device's node by default, a node the client names wins, and the
// hugetlb path really places its pages (fallocate allocates with the thread's
// policy, not the mapping's). vfiod runs pinned to CPU 0, on node 0, so
// memory that nothing steers lands on node 0 and the test can fail. Where the
// pages are is read by the client itself (move_pages(2) on its own mmap of
// the fd dma.alloc returned), not taken from vfiod's reply; and edu on node
// 1 reads and writes the default-placed memory through the IOMMU.
#include <gtest/gtest.h>
#include <sched.h>
#include <sys/mman.h>

#include <cstdio>
#include <map>

#include "as_user.h"
#include "daemon_harness.h"
#include "dma/numa.h"
#include "edu_bar.h"

namespace vfiod::itest {
namespace {

constexpr uid_t kUser = 1008;
constexpr uint64_t k2M = uint64_t{2} << 20;
constexpr uint64_t kSize = 4 * k2M;

/// The node all of `fd`'s first kSize bytes are on, seen through this
/// process's own mapping; -1 when spread or not present. `page`: the
/// backing's page size.
int NodeSeenByClient(int fd, uint64_t page, std::string& f) {
  void* mem = ::mmap(nullptr, kSize, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, 0);
  if (mem == MAP_FAILED) {
    f += "mmap of the returned fd failed; ";
    return -1;
  }
  auto placed = dma::NodesOf(mem, kSize, page);
  ::munmap(mem, kSize);
  if (!placed) {
    f += "move_pages: " + placed.error().message() + "; ";
    return -1;
  }
  return placed->node();
}

/// One dma.alloc: its reply's "numa", and the node the client sees.
struct Placed {
  json numa;
  int seen = -1;
  json result;
};

Placed Alloc(client::Client& c, uint64_t container, const std::string& backing, json extra,
             std::string& f) {
  json params = {
      {"container", container}, {"size", kSize}, {"backing", backing}, {"dma_mask_bits", 28}};
  params.update(extra);
  auto r = c.Call("dma.alloc", params);
  if (!r || r->fds.size() != 1) {
    f += "dma.alloc " + backing + ": " + (r ? std::string("no fd") : r.error().Describe()) + "; ";
    return {};
  }
  Placed p{r->result.value("numa", json()), -1, r->result};
  p.seen = NodeSeenByClient(r->fds[0].get(), backing == "hugetlb-2m" ? k2M : 4096, f);
  std::printf("dma.alloc %s %s: reply numa %s, client sees node %d\n", backing.c_str(),
              extra.dump().c_str(), p.numa.dump().c_str(), p.seen);
  return p;
}

/// As the user: a container of the node-1 edu, three allocations, their
/// nodes checked, an edu round trip through the default-placed memory.
std::string UseNodeOneEdu(const std::string& socket, const std::string& bdf) {
  auto c = client::Client::Connect(socket);
  if (!c) {
    return "connect: " + c.error().message();
  }
  auto made = c->Call("container.create", {{"devices", {bdf}}});
  if (!made) {
    return "container.create: " + made.error().Describe();
  }
  const uint64_t container = made->result["container"];
  std::string f;
  Placed huge = Alloc(*c, container, "hugetlb-2m", json::object(), f);
  Placed small = Alloc(*c, container, "4k", json::object(), f);
  Placed asked = Alloc(*c, container, "hugetlb-2m", {{"numa_node", 0}}, f);
  Placed anywhere = Alloc(*c, container, "4k", {{"numa_node", -1}}, f);
  for (const Placed* p : {&huge, &small}) {
    if (p->seen != 1 || p->numa.value("node", -2) != 1 || p->numa.value("policy", -2) != 1 ||
        p->numa.value("source", "") != "device") {
      f += "default placement is not the device's node 1: " + p->numa.dump() + " seen " +
           std::to_string(p->seen) + "; ";
    }
  }
  if (asked.seen != 0 || asked.numa.value("node", -2) != 0 ||
      asked.numa.value("source", "") != "request") {
    f += "numa_node 0 was not honoured: " + asked.numa.dump() + "; ";
  }
  if (anywhere.numa.value("source", "") != "none" || anywhere.numa.value("policy", -2) != -1 ||
      anywhere.numa.value("node", -2) != anywhere.seen) {
    f += "numa_node -1 reply does not match: " + anywhere.numa.dump() + "; ";
  }
  auto dev = c->Call("device.open", {{"container", container}, {"bdf", bdf}});
  if (!dev || dev->fds.size() != 1) {
    return f + "device.open: " + (dev ? std::string("no fd") : dev.error().Describe());
  }
  EduDevice edu;
  f += edu.Open(dev->fds[0].get());
  if (f.empty()) {
    // The default-placed hugetlb memory, through node 1's edu and back.
    auto again = c->Call("dma.alloc", {{"container", container},
                                       {"size", k2M},
                                       {"backing", "hugetlb-2m"},
                                       {"dma_mask_bits", 28}});
    if (!again || again->fds.size() != 1) {
      return f + "dma.alloc for the round trip failed";
    }
    void* mem = ::mmap(nullptr, k2M, PROT_READ | PROT_WRITE, MAP_SHARED, again->fds[0].get(), 0);
    if (mem == MAP_FAILED) {
      return f + "mmap for the round trip failed";
    }
    f += edu.RoundTrip(static_cast<uint8_t*>(mem), again->result["iova"], 2048, 41);
    ::munmap(mem, k2M);
    if (again->result.value("numa", json()).value("node", -2) != 1) {
      f += "the round-trip buffer is not on node 1; ";
    }
  }
  if (!c->Call("container.destroy", {{"container", container}})) {
    f += "container.destroy failed; ";
  }
  return f;
}

class VmNumaTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!InVm()) {
      GTEST_SKIP() << "runs inside the two-node test VM (VFIOD_VM_NUMA=1 tests/vm/vm_run.sh)";
    }
    const char* bdf = std::getenv("VFIOD_EDU_NODE1_BDF");
    ASSERT_TRUE(bdf != nullptr && *bdf != '\0')
        << "no edu on node 1: the guest was not booted with VFIOD_VM_NUMA=1";
    ASSERT_EQ(::geteuid(), 0U) << "needs root to start vfiod and run a client as another uid";
    bdf_ = bdf;
  }
  std::string bdf_;
};

TEST_F(VmNumaTest, DmaMemoryLandsOnTheDevicesNodeUnlessTheClientNamesOne) {
  auto online = dma::OnlineNumaNodes();
  ASSERT_TRUE(online && online->size() == 2) << "the guest should have nodes 0 and 1";
  // vfiod inherits this affinity: its "local" node is 0.
  cpu_set_t cpus;
  CPU_ZERO(&cpus);
  CPU_SET(0, &cpus);
  ASSERT_EQ(::sched_setaffinity(0, sizeof cpus, &cpus), 0);
  json policy = {{"rules", json::array({{{"users", json::array({kUser})},
                                         {"devices", json::array({bdf_})},
                                         {"quota", {{"locked_bytes", "64M"}, {"mappings", 8}}}}})}};
  Daemon daemon(policy);
  std::string failed = RunAs(kUser, kUser, [&] { return UseNodeOneEdu(daemon.socket(), bdf_); });
  EXPECT_EQ(failed, "");
  EXPECT_EQ(daemon.Stop(), 0);
}

}  // namespace
}  // namespace vfiod::itest
