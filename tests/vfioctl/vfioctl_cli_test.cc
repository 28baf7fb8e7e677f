// The vfioctl binary against a real vfiod (model kernel, fake sysfs tree):
// every subcommand, --json printing the RPC result verbatim, named containers
// and mappings surviving vfioctl's exit, fd passing for map-fd.
#include <gtest/gtest.h>
#include <sys/mman.h>

#include <chrono>
#include <thread>

#include "daemon_harness.h"
#include "run_vfioctl.h"
#include "support/prom_parser.h"

namespace vfiod::vfioctl_test {
namespace {

using itest::Daemon;
using itest::kEdu;
using itest::kIvshmem;
using itest::kUnbound;
using nlohmann::json;

class VfioctlTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (itest::InVm()) {
      GTEST_SKIP() << "host test (model kernel); the VM runs VfioctlVm*";
    }
    daemon_ = std::make_unique<Daemon>();
  }

  /// vfioctl --socket S ARGS..., as root.
  RunResult Ctl(std::vector<std::string> args, RunOptions options = {}) {
    args.insert(args.begin(), {"--socket", daemon_->socket()});
    return Vfioctl(args, options);
  }
  /// The result of calling `method` directly with the client library.
  json Direct(const std::string& method, const json& params = nullptr) {
    client::Client c = daemon_->Connect();
    auto r = c.Call(method, params);
    EXPECT_TRUE(r.has_value()) << method << ": " << (r ? "" : r.error().Describe());
    return r ? r->result : json();
  }
  /// `container list` once it is empty, or the last list after 10 s: a
  /// vfioctl that exits closes its session, whose close hook runs a moment
  /// later (asynchronously), releasing what it held.
  json ContainersOnceReleased() {
    json list;
    for (int i = 0; i < 1000; ++i) {
      list = Ctl({"--json", "container", "list"}).Json();
      if (list == json::array()) {
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return list;
  }

  std::unique_ptr<Daemon> daemon_;
};

#define EXPECT_RUN_OK(r) EXPECT_EQ((r).exit, 0) << (r).Describe()

TEST_F(VfioctlTest, PingVersionStatusStats) {
  RunResult ping = Ctl({"ping"});
  EXPECT_RUN_OK(ping);
  EXPECT_NE(ping.out.find("alive"), std::string::npos) << ping.out;
  RunResult ping_json = Ctl({"--json", "ping"});
  EXPECT_EQ(ping_json.out, "{}\n");

  RunResult version = Ctl({"--json", "version"});
  EXPECT_RUN_OK(version);
  EXPECT_EQ(version.Json(), Direct("version"));
  EXPECT_NE(Ctl({"version"}).out.find("API 1"), std::string::npos);

  RunResult status = Ctl({"status"});
  EXPECT_RUN_OK(status);
  EXPECT_NE(status.out.find("kernel:"), std::string::npos) << status.out;
  EXPECT_NE(status.out.find("model"), std::string::npos) << status.out;
  json s = Ctl({"--json", "status"}).Json();
  EXPECT_EQ(s["kernel"], "model");
  EXPECT_EQ(s["api_version"], 1);

  RunResult stats = Ctl({"stats"});
  EXPECT_RUN_OK(stats);
  EXPECT_NE(stats.out.find("status"), std::string::npos) << stats.out;  // a by_method row
  json st = Ctl({"--json", "stats"}).Json();
  ASSERT_TRUE(st.is_object()) << st;
  EXPECT_GE(st["by_method"]["status"]["calls"].get<uint64_t>(), 2u);
}

// `stats --prometheus` prints the daemon's metrics text as it is: every line
// passes the strict parser, and it holds the counters `stats` holds.
TEST_F(VfioctlTest, StatsInThePrometheusFormat) {
  ASSERT_EQ(Ctl({"container", "create", kEdu, "--name", "p"}).exit, 0);
  ASSERT_EQ(Ctl({"dma", "alloc", "p", "64K", "--name", "b"}).exit, 0);
  RunResult prom = Ctl({"stats", "--prometheus"});
  EXPECT_RUN_OK(prom);
  auto parsed = promtest::ParsePrometheusText(prom.out);
  ASSERT_TRUE(parsed.has_value()) << parsed.error() << "\n" << prom.out;
  EXPECT_TRUE(prom.out.starts_with("# HELP vfiod_info ")) << prom.out;
  EXPECT_EQ(parsed->Value("vfiod_map_bytes_total"), 65536);
  EXPECT_EQ(parsed->Value("vfiod_requests_total", {{"method", "dma.alloc"}}), 1);
  EXPECT_EQ(parsed->Value("vfiod_mappings"), 1);
  json j = Ctl({"--json", "stats", "--prometheus"}).Json();
  EXPECT_EQ(j["content_type"], "text/plain; version=0.0.4");
  EXPECT_TRUE(promtest::ParsePrometheusText(j["text"].get<std::string>()).has_value());
}

TEST_F(VfioctlTest, SocketFromTheEnvironment) {
  RunResult r = Vfioctl({"ping"}, WithEnv("VFIOD_SOCKET=" + daemon_->socket()));
  EXPECT_RUN_OK(r);
}

TEST_F(VfioctlTest, DeviceListAndInfoAreVerbatimWithJson) {
  RunResult list = Ctl({"--json", "device", "list"});
  EXPECT_RUN_OK(list);
  EXPECT_EQ(list.Json(), Direct("device.list"));
  RunResult human = Ctl({"device", "list"});
  EXPECT_RUN_OK(human);
  EXPECT_NE(human.out.find("BDF"), std::string::npos);
  EXPECT_NE(human.out.find(kEdu), std::string::npos);
  EXPECT_NE(human.out.find("0x1234:0x11e8"), std::string::npos) << human.out;

  RunResult info = Ctl({"--json", "device", "info", kEdu});
  EXPECT_RUN_OK(info);
  EXPECT_EQ(info.Json(), Direct("device.info", {{"bdf", kEdu}}));
  RunResult info_human = Ctl({"device", "info", kEdu});
  EXPECT_RUN_OK(info_human);
  EXPECT_NE(info_human.out.find("iommu group:"), std::string::npos) << info_human.out;
  EXPECT_NE(info_human.out.find("1 MiB"), std::string::npos) << info_human.out;  // BAR0
}

TEST_F(VfioctlTest, DeviceBindAndUnbind) {
  RunResult bind = Ctl({"device", "bind", kUnbound});
  EXPECT_RUN_OK(bind);
  EXPECT_NE(bind.out.find("vfio-pci"), std::string::npos) << bind.out;
  EXPECT_EQ(daemon_->tree()->DriverOf(kUnbound), "vfio-pci");
  RunResult unbind = Ctl({"--json", "device", "unbind", kUnbound});
  EXPECT_RUN_OK(unbind);
  EXPECT_EQ(unbind.Json()["bdf"], kUnbound);
  EXPECT_NE(daemon_->tree()->DriverOf(kUnbound), "vfio-pci");
}

TEST_F(VfioctlTest, UnnamedContainerIsReleasedWhenVfioctlExits) {
  RunResult create = Ctl({"container", "create", kEdu});
  EXPECT_RUN_OK(create);
  EXPECT_NE(create.err.find("--name"), std::string::npos) << create.err;  // the note
  EXPECT_EQ(ContainersOnceReleased(), json::array());
  // The group is free again: another create works.
  EXPECT_RUN_OK(Ctl({"container", "create", kEdu}));
}

TEST_F(VfioctlTest, NamedContainerLifecycleWithMappings) {
  RunResult create = Ctl({"--json", "container", "create", kEdu, kIvshmem, "--name", "demo"});
  ASSERT_EQ(create.exit, 0) << create.Describe();
  const uint64_t id = create.Json()["container"].get<uint64_t>();
  EXPECT_EQ(create.Json()["name"], "demo");

  json list = Ctl({"--json", "container", "list"}).Json();
  ASSERT_EQ(list.size(), 1u) << list;
  EXPECT_EQ(list[0]["container"], id);
  EXPECT_NE(Ctl({"container", "list"}).out.find("demo"), std::string::npos);

  RunResult attach = Ctl({"--json", "container", "attach", "demo"});
  EXPECT_RUN_OK(attach);
  EXPECT_EQ(attach.Json()["container"], id);

  RunResult open = Ctl({"device", "open", "demo", kEdu});
  EXPECT_RUN_OK(open);
  EXPECT_NE(open.out.find("regions"), std::string::npos) << open.out;
  RunResult open_json = Ctl({"--json", "device", "open", std::to_string(id), kEdu});
  EXPECT_RUN_OK(open_json);
  EXPECT_EQ(open_json.Json()["fd"], json({{"fd", 0}}));
  EXPECT_EQ(open_json.Json()["reset"], "not_needed");  // the same user as the first open
  EXPECT_NE(open.out.find("reset before the hand-over: "), std::string::npos) << open.out;
  RunResult reset = Ctl({"--json", "device", "reset", kEdu});  // the model's edu has FLR
  EXPECT_RUN_OK(reset);
  EXPECT_EQ(reset.Json()["method"], "function");
  EXPECT_NE(Ctl({"device", "reset", kEdu}).out.find("function reset"), std::string::npos);

  RunResult alloc = Ctl({"--json", "dma", "alloc", "demo", "2M", "--backing", "4k",
                         "--dma-mask-bits", "28", "--name", "buf"});
  ASSERT_EQ(alloc.exit, 0) << alloc.Describe();
  json a = alloc.Json();
  EXPECT_EQ(a["size"], 2u << 20);
  EXPECT_LT(a["iova"].get<uint64_t>() + (2u << 20), 1ull << 28);
  EXPECT_EQ(a["fd"], json({{"fd", 0}}));

  RunResult at =
      Ctl({"--json", "dma", "alloc", "demo", "64K", "--iova", "0x4000000", "--name", "fixed"});
  ASSERT_EQ(at.exit, 0) << at.Describe();
  EXPECT_EQ(at.Json()["iova"], 0x4000000u);
  RunResult strict = Ctl({"dma", "alloc", "demo", "2M", "--backing", "4k", "--require-thp"});
  EXPECT_NE(strict.exit, 0) << strict.Describe();
  EXPECT_NE(strict.err.find("ENOMEM"), std::string::npos) << strict.Describe();

  RunResult bar = Ctl({"dma", "map-bar", "demo", kIvshmem, "2", "--name", "bar"});
  EXPECT_RUN_OK(bar);
  EXPECT_NE(bar.out.find("64 MiB"), std::string::npos) << bar.out;

  json maps = Ctl({"--json", "dma", "list", "--container", "demo"}).Json();
  EXPECT_EQ(maps, Direct("dma.list", {{"container", id}}));
  EXPECT_EQ(maps.size(), 3u) << maps;
  RunResult maps_human = Ctl({"dma", "list"});
  EXPECT_NE(maps_human.out.find("buf"), std::string::npos) << maps_human.out;
  EXPECT_NE(maps_human.out.find("0x4000000"), std::string::npos) << maps_human.out;

  RunResult info = Ctl({"--json", "dma", "info", "buf"});
  EXPECT_RUN_OK(info);
  EXPECT_EQ(info.Json()["mapping"], a["mapping"]);
  EXPECT_RUN_OK(Ctl({"dma", "info", "buf"}));

  RunResult cinfo = Ctl({"container", "info", "demo"});
  EXPECT_RUN_OK(cinfo);
  EXPECT_NE(cinfo.out.find("'demo' (named)"), std::string::npos) << cinfo.out;
  EXPECT_NE(cinfo.out.find("fixed"), std::string::npos) << cinfo.out;

  RunResult freed = Ctl({"--json", "dma", "free", "buf"});
  EXPECT_RUN_OK(freed);
  EXPECT_EQ(freed.Json()["unmapped_bytes"], 2u << 20);
  EXPECT_RUN_OK(Ctl({"dma", "free", "bar"}));

  RunResult destroy = Ctl({"--json", "container", "destroy", "demo"});
  EXPECT_RUN_OK(destroy);
  EXPECT_EQ(destroy.Json()["unmapped_bytes"], 64u << 10);  // "fixed" was still mapped
  EXPECT_EQ(Ctl({"--json", "container", "list"}).Json(), json::array());
}

TEST_F(VfioctlTest, MapFdPassesAnInheritedMemfdOrAPath) {
  ASSERT_EQ(Ctl({"container", "create", kEdu, "--name", "fdc"}).exit, 0);
  UniqueFd memfd(::memfd_create("vfioctl-test", MFD_CLOEXEC | MFD_ALLOW_SEALING));
  ASSERT_TRUE(memfd);
  ASSERT_EQ(::ftruncate(memfd.get(), 1 << 20), 0);
  ASSERT_EQ(::fcntl(memfd.get(), F_ADD_SEALS, F_SEAL_SHRINK), 0);

  RunResult by_fd =
      Ctl({"--json", "dma", "map-fd", "fdc", "--fd", "3", "--name", "mf"}, WithFd3(memfd.get()));
  ASSERT_EQ(by_fd.exit, 0) << by_fd.Describe();
  EXPECT_EQ(by_fd.Json()["size"], 1u << 20);  // the file's size by default

  RunResult by_path = Ctl({"dma", "map-fd", "fdc", "--file", "/proc/self/fd/3", "--offset", "512K",
                           "--size", "256K", "--name", "mf2"},
                          WithFd3(memfd.get()));
  EXPECT_RUN_OK(by_path);
  EXPECT_NE(by_path.out.find("256 KiB"), std::string::npos) << by_path.out;
  EXPECT_EQ(Ctl({"--json", "dma", "list", "--container", "fdc"}).Json().size(), 2u);
  EXPECT_RUN_OK(Ctl({"container", "destroy", "fdc"}));
}

TEST_F(VfioctlTest, RegisterMapsSlicesAndMapFdTakesAScatterList) {
  ASSERT_EQ(Ctl({"container", "create", kEdu, "--name", "rc"}).exit, 0);
  UniqueFd memfd(::memfd_create("vfioctl-region", MFD_CLOEXEC | MFD_ALLOW_SEALING));
  ASSERT_TRUE(memfd);
  ASSERT_EQ(::ftruncate(memfd.get(), 1 << 20), 0);

  RunResult reg = Ctl({"--json", "dma", "register", "rc", "/proc/self/fd/3", "--slice", "0:64K",
                       "--slice", "1M-64K:64K@0x400000", "--name", "sl"},
                      WithFd3(memfd.get()));
  ASSERT_EQ(reg.exit, 1) << "1M-64K is not a size: " << reg.Describe();
  reg = Ctl({"--json", "dma", "register", "rc", "/proc/self/fd/3", "--slice", "0:64K", "--slice",
             "960K:64K@0x400000", "--name", "sl"},
            WithFd3(memfd.get()));
  ASSERT_EQ(reg.exit, 0) << reg.Describe();
  json r = reg.Json();
  EXPECT_EQ(r["region"]["size"], 1u << 20);
  ASSERT_EQ(r["mappings"].size(), 2u);
  EXPECT_EQ(r["mappings"][1]["iova"], 0x400000);
  // Named slices outlive vfioctl (the region itself went with its connection).
  EXPECT_EQ(Ctl({"--json", "dma", "list", "--container", "rc"}).Json().size(), 2u);

  RunResult sg = Ctl(
      {"--json", "dma", "map-fd", "rc", "--fd", "3", "--segments", "0:4K,128K:8K", "--name", "sg"},
      WithFd3(memfd.get()));
  ASSERT_EQ(sg.exit, 0) << sg.Describe();
  json s = sg.Json();
  EXPECT_EQ(s["size"], 12u << 10);
  ASSERT_EQ(s["segments"].size(), 2u);
  EXPECT_EQ(s["segments"][1]["offset"], 128u << 10);
  EXPECT_EQ(s["segments"][1]["iova"].get<uint64_t>(),
            s["segments"][0]["iova"].get<uint64_t>() + 4096);
  EXPECT_EQ(
      Ctl({"dma", "map-fd", "rc", "--fd", "3", "--segments", "0:4K,oops"}, WithFd3(memfd.get()))
          .exit,
      1);
  EXPECT_RUN_OK(Ctl({"container", "destroy", "rc"}));
}

TEST_F(VfioctlTest, RpcPassthroughPrintsTheResult) {
  RunResult r = Ctl({"--json", "rpc", "device.info", json({{"bdf", kEdu}}).dump()});
  EXPECT_RUN_OK(r);
  EXPECT_EQ(r.Json(), Direct("device.info", {{"bdf", kEdu}}));
  RunResult human = Ctl({"rpc", "version"});
  EXPECT_RUN_OK(human);
  EXPECT_EQ(json::parse(human.out), Direct("version"));
  RunResult discover = Ctl({"--json", "rpc", "rpc.discover"});
  EXPECT_RUN_OK(discover);
  EXPECT_EQ(discover.Json()["openrpc"], "1.2.6");
}

}  // namespace
}  // namespace vfiod::vfioctl_test
