// NUMA placement and locked-memory accounting on the host kernel. sysfs node
// lists are faked in a temporary folder, so the mbind path runs even on a
// one-node machine (where the kernel itself then refuses node 1).
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <linux/capability.h>
#include <linux/mempolicy.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "dma/backing.h"
#include "dma/numa.h"

namespace vfiod::dma {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

class FakeSysfs : public ::testing::Test {
 protected:
  void SetUp() override {
    char templ[] = "/tmp/vfiod-numa-XXXXXX";
    ASSERT_NE(::mkdtemp(templ), nullptr);
    dir_ = templ;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  void Write(const std::string& name, const std::string& text) {
    std::ofstream(dir_ / name) << text;
  }
  std::filesystem::path dir_;
};

TEST(NodeListTest, ParsesSysfsLists) {
  EXPECT_THAT(*ParseNodeList("0"), ElementsAre(0));
  EXPECT_THAT(*ParseNodeList("0-2,5"), ElementsAre(0, 1, 2, 5));
  EXPECT_THAT(*ParseNodeList(""), ElementsAre());
  for (const char* bad : {"x", "3-1", "1-", "-1", "1,,2"}) {
    auto nodes = ParseNodeList(bad);
    ASSERT_FALSE(nodes) << bad;
    EXPECT_EQ(nodes.error().code, EINVAL) << bad;
  }
}

TEST_F(FakeSysfs, ReadsOnlineNodesAndDeviceNode) {
  Write("online", "0-1\n");
  EXPECT_THAT(*OnlineNumaNodes(dir_), ElementsAre(0, 1));
  Write("numa_node", "1\n");
  EXPECT_EQ(*DeviceNumaNode(dir_), 1);
  Write("numa_node", "-1\n");
  EXPECT_EQ(*DeviceNumaNode(dir_), -1);
  Write("numa_node", "one\n");
  ASSERT_FALSE(DeviceNumaNode(dir_));
  EXPECT_EQ(DeviceNumaNode(dir_).error().code, EINVAL);
  EXPECT_EQ(*DeviceNumaNode(dir_ / "absent"), -1);
}

TEST_F(FakeSysfs, BindRefusesANodeThatIsNotOnline) {
  Write("online", "0\n");
  MappedMemory memory(
      ::mmap(nullptr, kPage4K, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0),
      kPage4K);
  auto bound = BindToNode(memory.addr(), kPage4K, {.node = 3}, dir_);
  ASSERT_FALSE(bound);
  EXPECT_EQ(bound.error().code, EINVAL);
  EXPECT_THAT(bound.error().detail, HasSubstr("online: 0"));
  // Node -1 and the only node are no-ops.
  EXPECT_TRUE(BindToNode(memory.addr(), kPage4K, {.node = -1}, dir_));
  EXPECT_TRUE(BindToNode(memory.addr(), kPage4K, {.node = 0}, dir_));
}

TEST_F(FakeSysfs, BindCallsMbindWhenThereAreSeveralNodes) {
  auto real = OnlineNumaNodes();
  ASSERT_TRUE(real) << real.error().message();
  Write("online", "0-1\n");
  MappedMemory memory(
      ::mmap(nullptr, 2 * kPage4K, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0),
      2 * kPage4K);
  // Node 0 exists everywhere: mbind takes it, strict or not.
  EXPECT_TRUE(BindToNode(memory.addr(), 2 * kPage4K, {.node = 0, .strict = true}, dir_));
  EXPECT_TRUE(BindToNode(memory.addr(), 2 * kPage4K, {.node = 0, .strict = false}, dir_));
  auto second = BindToNode(memory.addr(), 2 * kPage4K, {.node = 1, .strict = true}, dir_);
  if (real->size() > 1) {
    EXPECT_TRUE(second) << second.error().message();
  } else {
    ASSERT_FALSE(second);  // the fake said 1 is online; the kernel knows better
    EXPECT_EQ(second.error().code, EINVAL);
    EXPECT_EQ(second.error().op, "mbind");
  }
}

// The calling thread's policy mode, from get_mempolicy(2).
int ThreadPolicyMode() {
  int mode = -1;
  unsigned long mask[16] = {};
  if (::syscall(SYS_get_mempolicy, &mode, mask, sizeof(mask) * 8, nullptr, 0UL) != 0) {
    return -1;
  }
  return mode;
}

TEST_F(FakeSysfs, ThreadPolicyHoldsForItsLifeAndIsUndoneAfter) {
  Write("online", "0-1\n");
  ASSERT_EQ(ThreadPolicyMode(), MPOL_DEFAULT);
  {
    auto placed = ThreadNodePolicy::Apply({.node = 0, .strict = true}, dir_);
    ASSERT_TRUE(placed) << placed.error().message();
    EXPECT_EQ(ThreadPolicyMode(), MPOL_BIND);
    ThreadNodePolicy moved = std::move(*placed);  // the moved-from object undoes nothing
  }
  EXPECT_EQ(ThreadPolicyMode(), MPOL_DEFAULT);
  {
    auto preferred = ThreadNodePolicy::Apply({.node = 0}, dir_);
    ASSERT_TRUE(preferred);
    EXPECT_EQ(ThreadPolicyMode(), MPOL_PREFERRED);
  }
  EXPECT_EQ(ThreadPolicyMode(), MPOL_DEFAULT);
  // No node, or the only node: nothing to set.
  Write("online", "0\n");
  {
    auto none = ThreadNodePolicy::Apply({.node = 0, .strict = true}, dir_);
    ASSERT_TRUE(none);
    EXPECT_EQ(ThreadPolicyMode(), MPOL_DEFAULT);
  }
  auto offline = ThreadNodePolicy::Apply({.node = 2}, dir_);
  ASSERT_FALSE(offline);
  EXPECT_EQ(offline.error().code, EINVAL);
  EXPECT_THAT(offline.error().detail, HasSubstr("online: 0"));
}

TEST(NodesOfTest, CountsPresentPagesPerNodeAndAbsentOnesApart) {
  constexpr uint64_t kPages = 8;
  MappedMemory memory(
      ::mmap(nullptr, kPages * kPage4K, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0),
      kPages * kPage4K);
  auto* bytes = static_cast<volatile char*>(memory.addr());
  for (uint64_t page = 0; page < kPages / 2; ++page) {
    bytes[page * kPage4K] = 1;  // the first half present, the rest never touched
  }
  auto placed = NodesOf(memory.addr(), kPages * kPage4K, kPage4K);
  ASSERT_TRUE(placed) << placed.error().message();
  EXPECT_EQ(placed->bytes.at(-1), kPages / 2 * kPage4K);
  uint64_t on_nodes = 0;
  for (const auto& [node, count] : placed->bytes) {
    on_nodes += node >= 0 ? count : 0;
  }
  EXPECT_EQ(on_nodes, kPages / 2 * kPage4K);
  EXPECT_EQ(placed->node(), -1);  // not all present
  for (uint64_t page = kPages / 2; page < kPages; ++page) {
    bytes[page * kPage4K] = 1;
  }
  placed = NodesOf(memory.addr(), kPages * kPage4K, kPage4K);
  ASSERT_TRUE(placed);
  ASSERT_EQ(placed->bytes.size(), 1U);
  EXPECT_GE(placed->node(), 0);
  EXPECT_EQ(placed->bytes.at(placed->node()), kPages * kPage4K);
}

TEST(NodesOfTest, RefusesRangesThatAreNotWholePages) {
  MappedMemory memory(
      ::mmap(nullptr, 2 * kPage4K, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0),
      2 * kPage4K);
  auto* base = static_cast<char*>(memory.addr());
  EXPECT_EQ(NodesOf(base + 1, kPage4K, kPage4K).error().code, EINVAL);
  EXPECT_EQ(NodesOf(base, kPage4K + 1, kPage4K).error().code, EINVAL);
  EXPECT_EQ(NodesOf(base, 2 * kPage4K, 3 * kPage4K).error().code, EINVAL);
  EXPECT_EQ(NodesOf(base, 2 * kPage4K, 2048).error().code, EINVAL);
}

TEST(NumaBackingTest, BackingOnNodeZeroRecordsTheNode) {
  auto backing = CreatePagesBacking(4 * kPage4K, true, {.node = 0, .strict = true});
  ASSERT_TRUE(backing) << backing.error().message();
  EXPECT_EQ(backing->numa_node(), 0);
}

TEST(NumaBackingTest, BackingOnAMissingNodeFails) {
  auto backing = CreatePagesBacking(4 * kPage4K, true, {.node = 4000});
  ASSERT_FALSE(backing);
  EXPECT_EQ(backing.error().code, EINVAL);
}

TEST(LockedBytesTest, FollowsMlock) {
  const uint64_t before = *LockedBytes();
  MappedMemory memory(
      ::mmap(nullptr, 4 * kPage4K, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0),
      4 * kPage4K);
  // The raw syscalls: AddressSanitizer turns the mlock()/munlock() library
  // calls into no-ops, and this test is about what the kernel counts.
  if (::syscall(SYS_mlock, memory.addr(), 4 * kPage4K) != 0) {
    GTEST_SKIP() << "mlock not permitted here";
  }
  EXPECT_EQ(*LockedBytes(), before + 4 * kPage4K);
  ASSERT_EQ(::syscall(SYS_munlock, memory.addr(), 4 * kPage4K), 0);
  EXPECT_EQ(*LockedBytes(), before);
}

// Drops CAP_IPC_LOCK from this (child) process so RLIMIT_MEMLOCK applies.
bool DropIpcLock() {
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[2]{};
  if (::syscall(SYS_capget, &header, data) != 0) {
    return false;
  }
  data[CAP_IPC_LOCK / 32].effective &= ~(1U << (CAP_IPC_LOCK % 32));
  return ::syscall(SYS_capset, &header, data) == 0;
}

// Runs in the death-test child: 0 when a small pin fits and a large one is
// refused with ENOMEM naming RLIMIT_MEMLOCK.
int CheckLimitInChild() {
  struct rlimit limit {
    64 * 1024, 64 * 1024
  };
  if (::setrlimit(RLIMIT_MEMLOCK, &limit) != 0 || !DropIpcLock()) {
    return 2;
  }
  const bool small_fits = CheckMemlockHeadroom(4096).has_value();
  auto big = CheckMemlockHeadroom(1 << 20);
  const bool refused = !big && big.error().code == ENOMEM &&
                       big.error().detail.find("RLIMIT_MEMLOCK") != std::string::npos;
  return small_fits && refused ? 0 : 1;
}

TEST(MemlockHeadroomDeathTest, RefusesPastTheLimitWithoutCapIpcLock) {
  EXPECT_EXIT(std::_Exit(CheckLimitInChild()), ::testing::ExitedWithCode(0), "");
}

TEST(MemlockHeadroomTest, UnlimitedOrPrivilegedAlwaysFits) {
  struct rlimit limit {};
  ASSERT_EQ(::getrlimit(RLIMIT_MEMLOCK, &limit), 0);
  if (limit.rlim_cur != RLIM_INFINITY && ::geteuid() != 0) {
    GTEST_SKIP() << "neither unlimited nor root";
  }
  EXPECT_TRUE(CheckMemlockHeadroom(uint64_t{1} << 40));
}

}  // namespace
}  // namespace vfiod::dma
