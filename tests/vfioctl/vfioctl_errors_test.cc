// vfioctl's exit codes (1 bad arguments, 2 daemon unreachable, 3 refused by
// policy, 4 other daemon error, 5 timeout), each with one line on stderr; and
// the VM run of vfioctl as uid 65534 on the real kernel (the example drivers'
// is in examples_vm_test.cc).
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <algorithm>
#include <cstdlib>

#include "daemon_harness.h"
#include "run_vfioctl.h"

namespace vfiod::vfioctl_test {
namespace {

using itest::Daemon;
using itest::kEdu;
using itest::kIvshmem;
using itest::kNobody;
using nlohmann::json;

size_t Lines(const std::string& text) { return std::count(text.begin(), text.end(), '\n'); }

#define EXPECT_EXIT_CODE(r, code)                    \
  do {                                               \
    EXPECT_EQ((r).exit, code) << (r).Describe();     \
    EXPECT_EQ(Lines((r).err), 1u) << (r).Describe(); \
    EXPECT_TRUE((r).out.empty()) << (r).Describe();  \
  } while (0)

class VfioctlErrorsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (itest::InVm()) {
      GTEST_SKIP() << "host test (model kernel)";
    }
    daemon_ = std::make_unique<Daemon>();
  }
  RunResult Ctl(std::vector<std::string> args, RunOptions options = {}) {
    args.insert(args.begin(), {"--socket", daemon_->socket()});
    return Vfioctl(args, options);
  }
  /// As uid 65534, whom the default policy grants edu only, with a 4 MiB quota.
  RunResult AsNobody(std::vector<std::string> args) { return Ctl(std::move(args), AsUid(kNobody)); }
  std::unique_ptr<Daemon> daemon_;
};

TEST(VfioctlExit, DaemonAbsentIs2) {
  RunResult r = Vfioctl({"--socket", "/nonexistent/vfiod.sock", "ping"});
  EXPECT_EXIT_CODE(r, 2);
  EXPECT_NE(r.err.find("cannot reach vfiod at /nonexistent/vfiod.sock"), std::string::npos)
      << r.err;
}

TEST(VfioctlExit, BadCommandLinesAre1) {
  EXPECT_EQ(Vfioctl({}).exit, 1);
  EXPECT_EQ(Vfioctl({"frobnicate"}).exit, 1);
  EXPECT_EQ(Vfioctl({"device"}).exit, 1);                // a noun without a verb
  EXPECT_EQ(Vfioctl({"dma", "alloc", "demo"}).exit, 1);  // no size
  RunResult size = Vfioctl({"dma", "alloc", "demo", "2X"});
  EXPECT_EQ(size.exit, 1);
  EXPECT_NE(size.err.find("2X"), std::string::npos) << size.err;
  EXPECT_EQ(Vfioctl({"dma", "alloc", "demo", "2M", "--backing", "5k"}).exit, 1);
  EXPECT_EQ(Vfioctl({"dma", "map-fd", "demo"}).exit, 1);  // neither --fd nor --file
  EXPECT_EQ(Vfioctl({"--timeout", "-1", "ping"}).exit, 1);
  RunResult help = Vfioctl({"--help"});
  EXPECT_EQ(help.exit, 0);
  EXPECT_NE(help.out.find("Exit status"), std::string::npos) << help.out;
}

TEST(VfioctlExit, NoReplyWithinTheTimeoutIs5) {
  // A socket that accepts connections (backlog) but never answers.
  std::string dir = (std::filesystem::temp_directory_path() / "vfioctl-silent-XXXXXX").string();
  ASSERT_NE(::mkdtemp(dir.data()), nullptr);
  std::string path = dir + "/silent.sock";
  UniqueFd listener(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", path.c_str());
  ASSERT_EQ(::bind(listener.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ASSERT_EQ(::listen(listener.get(), 4), 0);
  RunResult r = Vfioctl({"--socket", path, "--timeout", "0.2", "ping"});
  EXPECT_EXIT_CODE(r, 5);
  std::filesystem::remove_all(dir);
}

TEST_F(VfioctlErrorsTest, InvalidParamsFromTheDaemonAre1) {
  RunResult r = Ctl({"rpc", "device.info", R"({"bdf": 5})"});
  EXPECT_EXIT_CODE(r, 1);
  EXPECT_EXIT_CODE(Ctl({"rpc", "device.info", "{not json"}), 1);
}

TEST_F(VfioctlErrorsTest, PolicyRefusalsAre3) {
  // ivshmem is not in nobody's rule.
  RunResult r = AsNobody({"container", "create", kIvshmem, "--name", "x"});
  EXPECT_EXIT_CODE(r, 3);
  EXPECT_NE(r.err.find("container.create"), std::string::npos) << r.err;
  EXPECT_EXIT_CODE(AsNobody({"device", "unbind", kEdu}), 3);  // root_only
  EXPECT_EXIT_CODE(AsNobody({"device", "bind", kEdu}), 3);    // no may_bind
  // Quota: 4 MiB of locked memory.
  ASSERT_EQ(AsNobody({"container", "create", kEdu, "--name", "q"}).exit, 0);
  EXPECT_EXIT_CODE(AsNobody({"dma", "alloc", "q", "8M"}), 3);
  RunResult fits = AsNobody({"dma", "alloc", "q", "2M"});
  EXPECT_EQ(fits.exit, 0) << fits.Describe();
  EXPECT_EQ(AsNobody({"container", "destroy", "q"}).exit, 0);  // its owner may
}

TEST_F(VfioctlErrorsTest, AnotherUsersNamedContainerIsUsedOnlyWhenSharedAndAskedFor) {
  ASSERT_EQ(Ctl({"container", "create", kEdu, "--name", "shared"}).exit, 0);  // root's
  // A name is nobody's own: root's "shared" is neither found nor attached.
  RunResult mine = AsNobody({"dma", "alloc", "shared", "2M"});
  EXPECT_EXIT_CODE(mine, 4);
  EXPECT_NE(mine.err.find("no container named 'shared'"), std::string::npos) << mine.err;
  // Not shared: even with --owner it stays invisible.
  EXPECT_EXIT_CODE(AsNobody({"--owner", "0", "dma", "alloc", "shared", "2M"}), 4);
  ASSERT_EQ(Ctl({"container", "share", "shared", "--user", std::to_string(kNobody)}).exit, 0);
  RunResult alloc =
      AsNobody({"--owner", "root", "--json", "dma", "alloc", "shared", "2M", "--name", "theirs"});
  ASSERT_EQ(alloc.exit, 0) << alloc.Describe();
  EXPECT_NE(alloc.err.find("of uid 0"), std::string::npos) << alloc.err;  // says whose
  RunResult list = Ctl({"--json", "dma", "list"});
  ASSERT_EQ(list.Json().size(), 1u) << list.Describe();
  EXPECT_EQ(list.Json()[0]["name"], "theirs");
  EXPECT_EQ(list.Json()[0]["owner_uid"], kNobody);
  // Names of mappings are per owner too: root has no mapping "theirs".
  EXPECT_EXIT_CODE(Ctl({"dma", "info", "theirs"}), 4);
  EXPECT_EQ(AsNobody({"dma", "info", "theirs"}).exit, 0);
  // Owner only: the refusal follows the line saying whose container it is.
  RunResult destroy = AsNobody({"--owner", "0", "container", "destroy", "shared"});
  EXPECT_EQ(destroy.exit, 3) << destroy.Describe();
  EXPECT_NE(destroy.err.find("of uid 0\n"), std::string::npos) << destroy.err;
  EXPECT_NE(destroy.err.find("only its owner"), std::string::npos) << destroy.err;
  // nobody may have its own "shared" (on ivshmem it is not permitted, so edu is needed: busy).
  EXPECT_EXIT_CODE(AsNobody({"container", "create", kEdu, "--name", "shared"}), 4);
  EXPECT_EQ(Ctl({"container", "destroy", "shared"}).exit, 0);
  RunResult own = AsNobody({"container", "create", kEdu, "--name", "shared"});
  EXPECT_EQ(own.exit, 0) << own.Describe();
  EXPECT_EQ(AsNobody({"container", "destroy", "shared"}).exit, 0);
}

TEST_F(VfioctlErrorsTest, OtherDaemonErrorsAre4) {
  RunResult r = Ctl({"device", "info", "0000:00:09.0"});
  EXPECT_EXIT_CODE(r, 4);
  EXPECT_NE(r.err.find("device.info"), std::string::npos) << r.err;
  EXPECT_EXIT_CODE(Ctl({"dma", "free", "999"}), 4);
  EXPECT_EXIT_CODE(Ctl({"dma", "info", "nosuchmapping"}), 4);
  EXPECT_EXIT_CODE(Ctl({"container", "info", "nosuchcontainer"}), 4);
  EXPECT_EXIT_CODE(Ctl({"rpc", "no.such.method"}), 4);
  ASSERT_EQ(Ctl({"container", "create", kEdu, "--name", "busy"}).exit, 0);
  EXPECT_EXIT_CODE(Ctl({"container", "create", kEdu}), 4);  // the group is in use
}

// --- in the test VM: the real kernel, vfioctl as uid 65534 ----------------------

/// The VM's edu address, or nullptr (then the test skips).
const char* VmEdu() { return itest::InVm() ? std::getenv("VFIOD_EDU_BDF") : nullptr; }

json VmPolicy(const std::string& edu) {
  const char* ivshmem = std::getenv("VFIOD_IVSHMEM_BDF");
  json devices = json::array({edu});
  if (ivshmem != nullptr) {
    devices.push_back(ivshmem);
  }
  return {{"rules", json::array({{{"users", json::array({kNobody})},
                                  {"devices", devices},
                                  {"quota", {{"locked_bytes", "64M"}}}}})}};
}

TEST(VfioctlVm, SessionAsNobodyOnTheRealKernel) {
  const char* edu = VmEdu();
  if (edu == nullptr || ::geteuid() != 0) {
    GTEST_SKIP() << "runs as root inside the test VM (tests/vm/vm_run.sh)";
  }
  Daemon daemon(VmPolicy(edu), "1G");
  auto ctl = [&](std::vector<std::string> args) {
    args.insert(args.begin(), {"--socket", daemon.socket()});
    return Vfioctl(args, AsUid(kNobody));
  };
  json status = ctl({"--json", "status"}).Json();
  EXPECT_EQ(status["kernel"], "linux") << status;
  RunResult list = ctl({"device", "list"});
  EXPECT_EQ(list.exit, 0) << list.Describe();
  EXPECT_NE(list.out.find(edu), std::string::npos) << list.out;
  RunResult create = ctl({"container", "create", edu, "--name", "vm"});
  ASSERT_EQ(create.exit, 0) << create.Describe();
  EXPECT_NE(create.out.find("4K, 2M, 1G"), std::string::npos) << create.out;
  // QEMU's edu has no function reset (no reset_method in sysfs) and sits on
  // the root bus (no hot reset): refused as such, exit 1.
  RunResult reset = ctl({"device", "reset", edu});
  EXPECT_EQ(reset.exit, 1) << reset.Describe();
  EXPECT_NE(reset.err.find("ENOTTY"), std::string::npos) << reset.Describe();
  RunResult alloc = ctl({"--json", "dma", "alloc", "vm", "4M", "--backing", "hugetlb-2m",
                         "--dma-mask-bits", "28", "--name", "buf"});
  ASSERT_EQ(alloc.exit, 0) << alloc.Describe();
  EXPECT_LT(alloc.Json()["iova"].get<uint64_t>(), 1ull << 28);
  json info = ctl({"--json", "dma", "info", "buf"}).Json();
  ASSERT_TRUE(info.contains("contiguity")) << info;
  EXPECT_EQ(info["contiguity"]["folios"]["2M"], 2) << info;
  EXPECT_EQ(ctl({"dma", "alloc", "vm", "128M"}).exit, 3);  // over the 64M quota
  EXPECT_EQ(ctl({"container", "destroy", "vm"}).exit, 0);

  // Peer to peer: ivshmem's 64 MiB BAR2 mapped into a container with edu.
  const char* ivshmem = std::getenv("VFIOD_IVSHMEM_BDF");
  ASSERT_NE(ivshmem, nullptr);
  ASSERT_EQ(ctl({"container", "create", edu, ivshmem, "--name", "vm"}).exit, 0);
  RunResult bar = ctl({"--json", "dma", "map-bar", "vm", ivshmem, "2", "--name", "bar"});
  ASSERT_EQ(bar.exit, 0) << bar.Describe();
  EXPECT_EQ(bar.Json()["size"], 64u << 20);
  // Freed and mapped again: the second map reuses vfiod's kept view of the
  // BAR (and its kept sysfs facts), still at natural alignment.
  ASSERT_EQ(ctl({"dma", "free", "bar"}).exit, 0);
  RunResult again = ctl({"--json", "dma", "map-bar", "vm", ivshmem, "2", "--name", "bar"});
  ASSERT_EQ(again.exit, 0) << again.Describe();
  EXPECT_EQ(again.Json()["size"], 64u << 20);
  EXPECT_TRUE(again.Json()["aligned"].get<bool>());
  ASSERT_EQ(ctl({"dma", "alloc", "vm", "4M", "--backing", "hugetlb-2m", "--name", "buf"}).exit, 0);
  RunResult destroy = ctl({"--json", "container", "destroy", "vm"});
  EXPECT_EQ(destroy.exit, 0) << destroy.Describe();
  EXPECT_EQ(destroy.Json()["unmapped_bytes"], (64u + 4u) << 20);  // BAR and buffer
}

}  // namespace
}  // namespace vfiod::vfioctl_test
