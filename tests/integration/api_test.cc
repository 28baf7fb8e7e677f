// Every method of the API against the real vfiod binary on the model kernel:
// results, fd passing, and the documented errors for bad requests.
#include <gtest/gtest.h>
#include <linux/memfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <cstring>
#include <set>

#include "model_daemon_fixture.h"
#include "proto/errors.h"
#include "support/hugepage_pool.h"

namespace vfiod::itest {
namespace {

class ApiTest : public ModelDaemonTest {
 protected:
  uint64_t CreateEduContainer() {
    auto r = Call("container.create", {{"devices", {kEdu}}});
    EXPECT_TRUE(r.has_value()) << r.error().Describe();
    return r ? r->result["container"].get<uint64_t>() : 0;
  }
};

TEST_F(ApiTest, PingVersionStatusStats) {
  auto ping = Call("ping");
  ASSERT_CALL_OK(ping);
  EXPECT_EQ(ping->result, json::object());
  auto version = Call("version");
  ASSERT_CALL_OK(version);
  EXPECT_EQ(version->result["version"], "0.1.0");
  EXPECT_EQ(version->result["api"], 1);
  json status = Status();
  EXPECT_EQ(status["kernel"], "model");
  EXPECT_EQ(status["clients"], 1);
  EXPECT_EQ(status["containers"], 0);
  EXPECT_EQ(status["locked_bytes"], 0);
  EXPECT_TRUE(status["extensions"]["type1v2"].get<bool>());
  EXPECT_TRUE(status["extensions"]["unmap_all"].get<bool>());
  auto stats = Call("stats");
  ASSERT_CALL_OK(stats);
  EXPECT_EQ(stats->result["by_method"]["ping"]["calls"], 1);
  EXPECT_EQ(stats->result["by_method"]["status"]["calls"], 1);
  EXPECT_GE(stats->result["requests"].get<uint64_t>(), 3u);
}

TEST_F(ApiTest, WithoutAnFdStoreNothingSurvivesARestartAndStatusSaysSo) {
  json status = Status();
  EXPECT_EQ(status["restart"]["fd_store"], false);
  auto info = Call("session.info");
  ASSERT_CALL_OK(info);
  EXPECT_EQ(info->result["resumable"], false);
  // A restart would release everything: refused, and vfiod serves on.
  EXPECT_EQ(CodeOf(Call("daemon.restart")), wire::kBusy);
  ASSERT_CALL_OK(Call("ping"));
}

TEST_F(ApiTest, DiscoverServesTheDocumentAndEveryDocumentedMethodExists) {
  auto doc = Call("rpc.discover");
  ASSERT_CALL_OK(doc);
  json file = json::parse(ReadAll(VFIOD_OPENRPC_JSON));
  EXPECT_EQ(doc->result, file);
  for (const auto& m : file["methods"]) {
    auto r = Call(m["name"].get<std::string>(), json::object());
    EXPECT_NE(CodeOf(r), wire::kMethodNotFound) << m["name"];
  }
  EXPECT_EQ(CodeOf(Call("dma.undocumented")), wire::kMethodNotFound);
}

TEST_F(ApiTest, DeviceListAndInfo) {
  auto list = Call("device.list");
  ASSERT_CALL_OK(list);
  std::map<std::string, json> by_bdf;
  for (const auto& d : list->result) {
    by_bdf[d["bdf"]] = d;
  }
  ASSERT_EQ(by_bdf.size(), 5u);
  EXPECT_EQ(by_bdf[kEdu]["vendor"], "0x1234");
  EXPECT_EQ(by_bdf[kEdu]["device"], "0x11e8");
  EXPECT_EQ(by_bdf[kEdu]["driver"], "vfio-pci");
  EXPECT_EQ(by_bdf[kEdu]["iommu_group"], 3);
  EXPECT_TRUE(by_bdf[kEdu]["viable"].get<bool>());
  EXPECT_TRUE(by_bdf[kEdu]["permitted"].get<bool>());
  EXPECT_FALSE(by_bdf[kNonViable]["viable"].get<bool>());

  // In no container: sysfs and config space only, no device is opened.
  auto unheld = Call("device.info", {{"bdf", kEdu}});
  ASSERT_CALL_OK(unheld);
  EXPECT_FALSE(unheld->result.contains("regions")) << unheld->result.dump();
  EXPECT_TRUE(unheld->result.contains("config")) << unheld->result.dump();
  // In the caller's container: the VFIO view too.
  ASSERT_CALL_OK(Call("container.create", {{"devices", {kEdu}}}));
  auto info = Call("device.info", {{"bdf", "00:03.0"}});
  ASSERT_CALL_OK(info);
  EXPECT_EQ(info->result["bdf"], kEdu);
  ASSERT_EQ(info->result["bars"].size(), 1u);
  EXPECT_EQ(info->result["bars"][0]["size"], 1u << 20);
  ASSERT_TRUE(info->result.contains("regions"));
  bool bar0 = false;
  for (const auto& r : info->result["regions"]) {
    bar0 |= r["index"] == 0 && r["size"] == (1u << 20);
  }
  EXPECT_TRUE(bar0) << info->result.dump();
  EXPECT_TRUE(info->result.contains("irqs"));
  // Not viable: no VFIO details, but the sysfs facts and the blocking member.
  auto nv = Call("device.info", {{"bdf", kNonViable}});
  ASSERT_CALL_OK(nv);
  EXPECT_FALSE(nv->result.contains("regions"));
  EXPECT_EQ(nv->result["group_members"].size(), 2u);
}

TEST_F(ApiTest, DeviceErrors) {
  auto unknown = Call("device.info", {{"bdf", "0000:00:09.0"}});
  EXPECT_EQ(CodeOf(unknown), wire::kNotFound);
  auto malformed = Call("device.info", {{"bdf", "zz:zz"}});
  EXPECT_EQ(CodeOf(malformed), wire::kInvalidParams);
  EXPECT_NE(DetailOf(malformed).find("params.bdf"), std::string::npos) << DetailOf(malformed);
  auto bad_item = Call("container.create", {{"devices", {kEdu, "00:3.0"}}});
  EXPECT_EQ(CodeOf(bad_item), wire::kInvalidParams);
  EXPECT_NE(DetailOf(bad_item).find("params.devices[1]"), std::string::npos);
  auto missing = Call("device.info", json::object());
  EXPECT_EQ(CodeOf(missing), wire::kInvalidParams);
  EXPECT_NE(DetailOf(missing).find("params.bdf"), std::string::npos) << DetailOf(missing);
  auto wrong = Call("device.info", {{"bdf", 3}});
  EXPECT_EQ(CodeOf(wrong), wire::kInvalidParams);
  auto extra = Call("device.info", {{"bdf", kEdu}, {"bogus", 1}});
  EXPECT_EQ(CodeOf(extra), wire::kInvalidParams);
  EXPECT_NE(DetailOf(extra).find("params.bogus"), std::string::npos);
  auto create = Call("container.create", {{"devices", {"0000:00:09.0"}}});
  EXPECT_EQ(CodeOf(create), wire::kNotFound);
}

TEST_F(ApiTest, BindAndUnbindMoveTheDriver) {
  auto bind = Call("device.bind", {{"bdf", kUnbound}});
  ASSERT_CALL_OK(bind);
  EXPECT_EQ(bind->result["driver"], "vfio-pci");
  EXPECT_EQ(daemon_->tree()->DriverOf(kUnbound), "vfio-pci");
  auto unbind = Call("device.unbind", {{"bdf", kUnbound}});
  ASSERT_CALL_OK(unbind);
  EXPECT_EQ(daemon_->tree()->DriverOf(kUnbound), "");
  EXPECT_EQ(unbind->result["driver"], "");
}

TEST_F(ApiTest, ContainerLifecycleAndDeviceFd) {
  auto created = Call("container.create", {{"devices", {kEdu}}});
  ASSERT_CALL_OK(created);
  const json& c = created->result;
  uint64_t id = c["container"];
  EXPECT_GT(id, 0u);
  EXPECT_EQ(c["groups"], json::array({3}));
  EXPECT_EQ(c["iova_ranges"].size(), 2u);
  EXPECT_EQ(c["iova_pgsizes"], 0x40201000u);
  EXPECT_EQ(c["dma_avail"], 65535);
  EXPECT_TRUE(c["extensions"]["type1v2"].get<bool>());
  // The group is the daemon's now: a second container cannot take it.
  EXPECT_EQ(CodeOf(Call("container.create", {{"devices", {kEdu}}})), wire::kBusy);
  // A non-viable group is refused by the kernel, with errno EPERM.
  auto nv = Call("container.create", {{"devices", {kNonViable}}});
  ASSERT_EQ(CodeOf(nv), wire::kKernelError);
  EXPECT_EQ(nv.error().data["errno_name"], "EPERM");

  auto dev = Call("device.open", {{"container", id}, {"bdf", kEdu}});
  ASSERT_CALL_OK(dev);
  ASSERT_EQ(dev->fds.size(), 1u);
  EXPECT_GE(::fcntl(dev->fds[0].get(), F_GETFD), 0);
  EXPECT_EQ(dev->result["fd"], json({{"fd", 0}}));
  EXPECT_GT(dev->result["num_regions"].get<int>(), 7);
  EXPECT_EQ(CodeOf(Call("device.open", {{"container", id}, {"bdf", kIvshmem}})),
            wire::kInvalidParams);

  auto list = Call("container.list");
  ASSERT_CALL_OK(list);
  ASSERT_EQ(list->result.size(), 1u);
  EXPECT_EQ(list->result[0]["container"], id);
  EXPECT_EQ(list->result[0]["owner_uid"], 0);
  auto info = Call("container.info", {{"container", id}});
  ASSERT_CALL_OK(info);
  EXPECT_EQ(info->result["mappings"], json::array());
  auto destroyed = Call("container.destroy", {{"container", id}});
  ASSERT_CALL_OK(destroyed);
  EXPECT_EQ(destroyed->result["unmapped_bytes"], 0);
  EXPECT_EQ(CodeOf(Call("container.info", {{"container", id}})), wire::kNotFound);
  EXPECT_EQ(Status()["containers"], 0);
}

// Where the daemon maps the file with inode `ino` (from /proc/<pid>/maps).
std::optional<uint64_t> DaemonMappingOf(pid_t pid, ino_t ino) {
  std::ifstream maps("/proc/" + std::to_string(pid) + "/maps");
  std::string line;
  while (std::getline(maps, line)) {
    uint64_t start = 0, end = 0, offset = 0, inode = 0;
    char perms[8] = {}, dev[16] = {};
    if (std::sscanf(line.c_str(), "%lx-%lx %7s %lx %15s %lu", &start, &end, perms, &offset, dev,
                    &inode) == 6 &&
        inode == ino) {
      return start;
    }
  }
  return std::nullopt;
}

TEST_F(ApiTest, AllocHandsOverTheMemoryThatIsMapped) {
  uint64_t c = CreateEduContainer();
  const uint64_t size = 1 << 20;
  auto alloc = Call("dma.alloc",
                    {{"container", c}, {"size", size}, {"backing", "4k"}, {"dma_mask_bits", 28}});
  ASSERT_CALL_OK(alloc);
  ASSERT_EQ(alloc->fds.size(), 1u);
  uint64_t iova = alloc->result["iova"];
  EXPECT_LT(iova + size, uint64_t{1} << 28);
  EXPECT_EQ(alloc->result["size"], size);
  EXPECT_EQ(alloc->result["backing"], "4k");
  EXPECT_GE(alloc->result["chunks"].get<int>(), 1);
  // The client writes through its fd...
  int fd = alloc->fds[0].get();
  void* mem = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  ASSERT_NE(mem, MAP_FAILED);
  std::memset(mem, 0x5a, size);
  std::memcpy(mem, "vfiod-itest", 11);
  // ...and the daemon's mapping of that same file holds those bytes.
  struct stat st {};
  ASSERT_EQ(::fstat(fd, &st), 0);
  auto vaddr = DaemonMappingOf(daemon_->pid(), st.st_ino);
  ASSERT_TRUE(vaddr.has_value());
  UniqueFd proc_mem(
      ::open(("/proc/" + std::to_string(daemon_->pid()) + "/mem").c_str(), O_RDONLY | O_CLOEXEC));
  char seen[11] = {};
  ASSERT_EQ(::pread(proc_mem.get(), seen, sizeof seen, static_cast<off_t>(*vaddr)), 11);
  EXPECT_EQ(std::string(seen, 11), "vfiod-itest");
  ::munmap(mem, size);

  json status = Status();
  EXPECT_EQ(status["mappings"], 1);
  EXPECT_EQ(status["locked_bytes"], size);
  uint64_t m = alloc->result["mapping"];
  auto info = Call("dma.info", {{"mapping", m}});
  ASSERT_CALL_OK(info);
  EXPECT_EQ(info->result["iova"], iova);
  EXPECT_EQ(info->result["container"], c);
  EXPECT_TRUE(info->result.contains("contiguity"));
  auto list = Call("dma.list", {{"container", c}});
  ASSERT_CALL_OK(list);
  ASSERT_EQ(list->result.size(), 1u);
  auto freed = Call("dma.free", {{"mapping", m}});
  ASSERT_CALL_OK(freed);
  EXPECT_EQ(freed->result["unmapped_bytes"], size);
  EXPECT_EQ(Status()["locked_bytes"], 0);
  EXPECT_EQ(CodeOf(Call("dma.free", {{"mapping", m}})), wire::kNotFound);
  auto stats = Call("stats");
  ASSERT_CALL_OK(stats);
  EXPECT_EQ(stats->result["map"]["bytes"], size);
  EXPECT_EQ(stats->result["unmap"]["bytes"], size);
}

TEST_F(ApiTest, AllocWithProgressAndFixedIova) {
  uint64_t c = CreateEduContainer();
  std::vector<json> progress;
  client_->OnNotification([&](const std::string& method, const json& params) {
    if (method == "dma.progress") {
      progress.push_back(params);
    }
  });
  const uint64_t size = 8 << 20;  // 4 chunks of 2 MiB
  auto alloc = Call("dma.alloc", {{"container", c},
                                  {"size", size},
                                  {"backing", "thp"},
                                  {"iova", 0x1000000},
                                  {"progress", true}});
  ASSERT_CALL_OK(alloc);
  EXPECT_EQ(alloc->result["iova"], 0x1000000);
  // Whenever vfiod can see its folios (CAP_SYS_ADMIN, which also lets it
  // mount its private huge tmpfs), thp is all PMD-sized folios.
  auto info = Call("dma.info", {{"mapping", alloc->result["mapping"]}});
  ASSERT_CALL_OK(info);
  const json contiguity = info->result.value("contiguity", json::object());
  if (contiguity.value("state", "") == "known") {
    EXPECT_EQ(contiguity["folios"]["2M"], size >> 21) << contiguity.dump();
    EXPECT_EQ(contiguity["folios"]["4K"], 0) << contiguity.dump();
  }
  ASSERT_FALSE(progress.empty());
  EXPECT_EQ(progress.back()["done_bytes"], size);
  EXPECT_EQ(progress.back()["total_bytes"], size);
  // The same IOVA again overlaps: the kernel's (model's) EEXIST.
  auto again =
      Call("dma.alloc", {{"container", c}, {"size", 4096}, {"backing", "4k"}, {"iova", 0x1000000}});
  EXPECT_EQ(CodeOf(again), wire::kKernelError);
  EXPECT_EQ(again.error().data["errno_name"], "EEXIST");
}

TEST_F(ApiTest, BadSizesAndTypesAreInvalidParams) {
  uint64_t c = CreateEduContainer();
  struct Case {
    json params;
    std::string field;
  };
  std::vector<Case> cases = {
      {{{"container", c}, {"size", 4097}, {"backing", "4k"}}, "params.size"},
      {{{"container", c}, {"size", 0}, {"backing", "4k"}}, "params.size"},
      {{{"container", c}, {"size", 4096}, {"backing", "hugetlb-2m"}}, "params.size"},
      {{{"container", c}, {"size", "4096"}, {"backing", "4k"}}, "params.size"},
      {{{"container", c}, {"size", -4096}, {"backing", "4k"}}, "params.size"},
      {{{"container", c}, {"size", 4096}, {"backing", "5k"}}, "params.backing"},
      {{{"container", c}, {"size", 4096}}, "params.backing"},
      {{{"container", "one"}, {"size", 4096}, {"backing", "4k"}}, "params.container"},
      {{{"container", c}, {"size", 4096}, {"backing", "4k"}, {"iova", 0x1001}}, "params.iova"},
      {{{"container", c}, {"size", 8192}, {"backing", "4k"}, {"iova", 0xfffffffffffff000u}},
       "params.iova"},
      {{{"container", c}, {"size", 4096}, {"backing", "4k"}, {"dma_mask_bits", 80}},
       "params.dma_mask_bits"},
      {{{"container", c}, {"size", 4096}, {"backing", "4k"}, {"progress", "yes"}},
       "params.progress"},
      {{{"container", c}, {"size", 4096}, {"backing", "4k"}, {"require", "fast"}},
       "params.require"},
      {{{"container", c}, {"size", 4096}, {"backing", "4k"}, {"require", true}}, "params.require"},
  };
  for (const auto& k : cases) {
    auto r = Call("dma.alloc", k.params);
    EXPECT_EQ(CodeOf(r), wire::kInvalidParams) << k.params.dump();
    EXPECT_NE(DetailOf(r).find(k.field), std::string::npos) << DetailOf(r);
  }
  EXPECT_EQ(CodeOf(Call("dma.alloc", json::array({1, 2}))), wire::kInvalidParams);
  EXPECT_EQ(CodeOf(Call("dma.alloc", {{"container", 999}, {"size", 4096}, {"backing", "4k"}})),
            wire::kNotFound);
  EXPECT_EQ(Status()["mappings"], 0);
}

// "require": "thp": memory not all in 2 MiB folios is refused with ENOMEM
// and leaves nothing behind; hugetlb memory passes and the reply says so.
TEST_F(ApiTest, RequireThpRefusesSmallPagesAndReportsTheHugeShare) {
  uint64_t c = CreateEduContainer();
  const json before = Status();
  auto small = Call("dma.alloc",
                    {{"container", c}, {"size", 2 << 20}, {"backing", "4k"}, {"require", "thp"}});
  EXPECT_EQ(CodeOf(small), wire::kKernelError);
  ASSERT_FALSE(small.has_value());
  EXPECT_EQ(small.error().data["errno_name"], "ENOMEM") << DetailOf(small);
  EXPECT_NE(DetailOf(small).find("0 of 2097152 bytes"), std::string::npos) << DetailOf(small);
  const json after = Status();
  EXPECT_EQ(after["mappings"], before["mappings"]);
  EXPECT_EQ(after["locked_bytes"], before["locked_bytes"]);
  EXPECT_EQ(after["dma_entries"], before["dma_entries"]);
  testing::HugepagePool2M pool(2);
  ASSERT_TRUE(pool.ok()) << "no 2 MiB hugepages could be made free (root needed)";
  auto huge =
      Call("dma.alloc",
           {{"container", c}, {"size", 4 << 20}, {"backing", "hugetlb-2m"}, {"require", "thp"}});
  ASSERT_CALL_OK(huge);
  EXPECT_EQ(huge->result["huge"],
            json({{"bytes", 4 << 20}, {"huge_bytes", 4 << 20}, {"source", "pagemap"}}));
  ASSERT_CALL_OK(Call("dma.free", {{"mapping", huge->result["mapping"]}}));
}

TEST_F(ApiTest, MapFdMapsTheClientsSealedMemfd) {
  uint64_t c = CreateEduContainer();
  const uint64_t size = 2 << 20;
  UniqueFd memfd(
      static_cast<int>(::syscall(SYS_memfd_create, "itest", MFD_CLOEXEC | MFD_ALLOW_SEALING)));
  ASSERT_TRUE(memfd.valid());
  ASSERT_EQ(::ftruncate(memfd.get(), size), 0);
  ASSERT_EQ(::fcntl(memfd.get(), F_ADD_SEALS, F_SEAL_SHRINK), 0);
  int fds[] = {memfd.get()};
  auto mapped = Call("dma.map_fd", {{"container", c}, {"fd", {{"fd", 0}}}, {"size", size}}, fds);
  ASSERT_CALL_OK(mapped);
  EXPECT_EQ(mapped->result["size"], size);
  EXPECT_EQ(Status()["locked_bytes"], size);
  // The fd reference must match a carried fd.
  auto nofd = Call("dma.map_fd", {{"container", c}, {"fd", {{"fd", 0}}}, {"size", size}});
  EXPECT_EQ(CodeOf(nofd), wire::kFdError);
  // A pipe is not memory.
  int p[2];
  ASSERT_EQ(::pipe2(p, O_CLOEXEC), 0);
  UniqueFd r0(p[0]), r1(p[1]);
  int pipe_fds[] = {p[0]};
  auto piped =
      Call("dma.map_fd", {{"container", c}, {"fd", {{"fd", 0}}}, {"size", 4096}}, pipe_fds);
  EXPECT_NE(CodeOf(piped), 0);
  EXPECT_EQ(Status()["mappings"], 1);
}

TEST_F(ApiTest, MapBarIsPeerToPeerAndNotPinned) {
  auto created = Call("container.create", {{"devices", {kEdu, kIvshmem}}});
  ASSERT_CALL_OK(created);
  uint64_t c = created->result["container"];
  EXPECT_EQ(created->result["groups"].size(), 2u);
  auto bar = Call("dma.map_bar", {{"container", c}, {"bdf", kIvshmem}, {"bar", 2}});
  ASSERT_CALL_OK(bar);
  EXPECT_EQ(bar->result["size"], 64u << 20);
  EXPECT_TRUE(bar->result["aligned"].get<bool>());
  EXPECT_EQ(Status()["locked_bytes"], 0);
  EXPECT_EQ(Status()["mappings"], 1);
  EXPECT_EQ(CodeOf(Call("dma.map_bar", {{"container", c}, {"bdf", kIvshmem}, {"bar", 1}})),
            wire::kInvalidParams);
  EXPECT_EQ(CodeOf(Call("dma.map_bar", {{"container", c}, {"bdf", kIvshmem}, {"bar", 9}})),
            wire::kInvalidParams);
}

TEST_F(ApiTest, MalformedJsonKeepsTheConnectionUsable) {
  UniqueFd s(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, daemon_->socket().c_str(), sizeof addr.sun_path - 1);
  ASSERT_EQ(::connect(s.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  std::string lines =
      "{\"jsonrpc\":\"2.0\",\"method\":\n"
      "{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"ping\"}\n";
  ASSERT_EQ(::write(s.get(), lines.data(), lines.size()), static_cast<ssize_t>(lines.size()));
  std::string got;
  char buf[512];
  while (std::count(got.begin(), got.end(), '\n') < 2) {
    ssize_t n = ::read(s.get(), buf, sizeof buf);
    ASSERT_GT(n, 0);
    got.append(buf, static_cast<size_t>(n));
  }
  auto first = json::parse(got.substr(0, got.find('\n')));
  auto second = json::parse(got.substr(got.find('\n') + 1));
  EXPECT_EQ(first["error"]["code"], wire::kParseError);
  EXPECT_EQ(second["id"], 7);
  EXPECT_EQ(second["result"], json::object());
}

TEST_F(ApiTest, NamedContainerOutlivesItsCreator) {
  {
    client::Client creator = daemon_->Connect();
    auto r = creator.Call("container.create", {{"devices", {kEdu}}, {"name", "shared-edu"}});
    ASSERT_CALL_OK(r);
    auto m = creator.Call("dma.alloc", {{"container", r->result["container"]},
                                        {"size", 4096},
                                        {"backing", "4k"},
                                        {"name", "ring"}});
    ASSERT_CALL_OK(m);
    auto loose = creator.Call(
        "dma.alloc", {{"container", r->result["container"]}, {"size", 4096}, {"backing", "4k"}});
    ASSERT_CALL_OK(loose);
  }
  // The creator's unnamed mapping goes with it; the named ones stay.
  json status;
  for (int i = 0; i < 500; ++i) {
    status = Status();
    // The session goes first, its mappings a moment later (close hook).
    if (status["clients"] == 1 && status["mappings"] == 1) {
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(status["containers"], 1);
  EXPECT_EQ(status["mappings"], 1);
  auto attached = Call("container.attach", {{"name", "shared-edu"}});
  ASSERT_CALL_OK(attached);
  EXPECT_EQ(attached->result["name"], "shared-edu");
  EXPECT_EQ(CodeOf(Call("container.attach", {{"name", "nope"}})), wire::kNotFound);
  EXPECT_EQ(CodeOf(Call("container.create", {{"devices", {kIvshmem}}, {"name", "shared-edu"}})),
            wire::kBusy);
  auto destroyed = Call("container.destroy", {{"container", attached->result["container"]}});
  ASSERT_CALL_OK(destroyed);
  EXPECT_EQ(destroyed->result["unmapped_bytes"], 4096);
  EXPECT_EQ(Status()["containers"], 0);
}

TEST_F(ApiTest, SigtermReleasesEverythingAndExitsCleanly) {
  uint64_t c = CreateEduContainer();
  ASSERT_CALL_OK(Call("dma.alloc", {{"container", c}, {"size", 1 << 20}, {"backing", "4k"}}));
  EXPECT_EQ(daemon_->Stop(), 0);
  std::string text = ReadAll(daemon_->log_path());
  EXPECT_NE(text.find("stopped"), std::string::npos) << text;
}

TEST(SystemdTest, SocketActivationAndReadinessNotification) {
  if (InVm() || ::access("/usr/bin/systemd-socket-activate", X_OK) != 0) {
    GTEST_SKIP() << "needs systemd-socket-activate on the host";
  }
  Daemon daemon(Daemon::DefaultPolicy(), "2M", Launch::kSystemdLike);
  client::Client c = daemon.Connect();
  auto ping = c.Call("ping");
  ASSERT_CALL_OK(ping);
  EXPECT_NE(ReadAll(daemon.log_path()).find("serving the socket systemd passed"),
            std::string::npos);
  std::string notes = daemon.Notifications();
  EXPECT_NE(notes.find("READY=1"), std::string::npos) << notes;
  EXPECT_NE(notes.find("STATUS="), std::string::npos) << notes;
  EXPECT_EQ(daemon.Stop(), 0);
  EXPECT_NE(daemon.Notifications().find("STOPPING=1"), std::string::npos);
}

// Issue 14's first step: each container's fd goes into the service manager's
// fd store as c-<id> when it is created, and is removed when it is destroyed.
TEST(SystemdTest, ContainerFdsGoIntoTheFdStoreAndLeaveIt) {
  if (InVm() || ::access("/usr/bin/systemd-socket-activate", X_OK) != 0) {
    GTEST_SKIP() << "needs systemd-socket-activate on the host";
  }
  Daemon daemon(Daemon::DefaultPolicy(), "2M", Launch::kSystemdLike);
  client::Client c = daemon.Connect();
  auto created = c.Call("container.create", {{"devices", {kEdu}}});
  ASSERT_CALL_OK(created);
  const std::string name =
      "FDNAME=c-" + std::to_string(created->result["container"].get<uint64_t>());
  std::string notes = daemon.Notifications();
  EXPECT_NE(notes.find("FDSTORE=1\n" + name + "|"), std::string::npos) << notes;
  // (An older state record may be removed meanwhile: vfiod-state-N.)
  EXPECT_EQ(notes.find("FDSTOREREMOVE=1\n" + name + "|"), std::string::npos) << notes;
  ASSERT_CALL_OK(c.Call("container.destroy", {{"container", created->result["container"]}}));
  notes = daemon.Notifications();
  EXPECT_NE(notes.find("FDSTOREREMOVE=1\n" + name + "|"), std::string::npos) << notes;
  EXPECT_EQ(daemon.Stop(), 0);
}

}  // namespace
}  // namespace vfiod::itest
