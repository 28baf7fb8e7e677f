// Tenant isolation against the real vfiod binary (model kernel): every method
// that reaches a container, mapping or region, called by the owner, by a user
// the container is shared with, by another user the policy permits the same
// devices, and by root, each from its own process and uid, with the outcome
// each must get. Ids are guessed on purpose (another user's container,
// mapping and region ids are passed straight in): what a caller may not see
// answers kNotFound, what it may see but not change kPermissionDenied.
//
// Then: names are per owner, status/stats show a user its own figures,
// device.info opens nothing, and a device fd that outlives its container
// keeps its group held and charged until it is closed.
#include <gtest/gtest.h>
#include <linux/memfd.h>
#include <sys/mman.h>

#include <array>
#include <functional>
#include <thread>

#include "as_user.h"
#include "daemon_harness.h"
#include "forked_client.h"
#include "proto/errors.h"

namespace vfiod::itest {
namespace {

constexpr uid_t kOwner = 1000;
constexpr uid_t kShared = 1001;
constexpr uid_t kOther = 1002;
constexpr uid_t kHolder = 1003;  ///< one container of quota (the lingering test)
constexpr uid_t kRoot = 0;
constexpr std::array<uid_t, 4> kCallers = {kOwner, kShared, kOther, kRoot};
constexpr int kOk = 0;
constexpr int kHidden = wire::kNotFound;
constexpr int kDenied = wire::kPermissionDenied;

/// Every non-root user may use edu and ivshmem, with room for the scenarios.
json TenantPolicy() {
  json quota = {{"locked_bytes", "64M"}, {"mappings", 64}, {"containers", 8}};
  json one = {{"locked_bytes", "64M"}, {"mappings", 64}, {"containers", 1}};
  return {{"rules", json::array({{{"users", json::array({kOwner, kShared, kOther})},
                                  {"devices", json::array({kEdu, kIvshmem})},
                                  {"quota", quota}},
                                 {{"users", json::array({kHolder})},
                                  {"devices", json::array({kEdu, kIvshmem})},
                                  {"quota", one}}})}};
}

/// A call's outcome as one line: "0 <result>" or "<code> <detail>".
struct Outcome {
  int code = -1;
  json result;
  std::string detail;
};

/// Calls `method` as `uid` from a forked child on its own connection (so
/// its unnamed objects go when the child does). With `memfd`, the call
/// carries a 1 MiB sealed memfd as fd 0.
Outcome CallAs(const std::string& socket, uid_t uid, const std::string& method, const json& params,
               bool memfd = false) {
  std::string text = RunAs(uid, uid, [&]() -> std::string {
    auto c = client::Client::Connect(socket);
    if (!c) {
      return "-1 connect: " + c.error().message();
    }
    UniqueFd file;
    std::vector<int> fds;
    if (memfd) {
      file = UniqueFd(::memfd_create("tenancy", MFD_CLOEXEC | MFD_ALLOW_SEALING));
      if (!file || ::ftruncate(file.get(), 1 << 20) != 0) {
        return "-1 memfd failed";
      }
      fds.push_back(file.get());
    }
    auto r = c->Call(method, params, fds);
    if (r) {
      return "0 " + r->result.dump();
    }
    return std::to_string(r.error().code) + " " + DetailOf(r);
  });
  Outcome out;
  size_t space = text.find(' ');
  try {
    out.code = std::stoi(text.substr(0, space));
  } catch (const std::exception&) {
    out.detail = text;
    return out;
  }
  std::string rest = space == std::string::npos ? "" : text.substr(space + 1);
  if (out.code == 0) {
    out.result = json::parse(rest, nullptr, false);
  } else {
    out.detail = rest;
  }
  return out;
}

std::string Name(uid_t uid) {
  switch (uid) {
    case kOwner:
      return "owner";
    case kShared:
      return "shared";
    case kOther:
      return "other";
    default:
      return "root";
  }
}

class TenancyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (InVm()) {
      GTEST_SKIP() << "model-kernel scenario; the VM runs VmEduTest";
    }
    if (::geteuid() != 0) {
      GTEST_SKIP() << "needs root to run callers as other uids";
    }
    daemon_ = std::make_unique<Daemon>(TenantPolicy());
    root_ = std::make_unique<client::Client>(daemon_->Connect());
  }
  void TearDown() override {
    if (daemon_) {
      root_.reset();
      EXPECT_EQ(daemon_->Stop(), 0) << ReadAll(daemon_->log_path());
    }
  }
  Outcome As(uid_t uid, const std::string& method, const json& params = json::object(),
             bool memfd = false) {
    return CallAs(daemon_->socket(), uid, method, params, memfd);
  }
  /// The result of a call that must succeed (a failed one fails the test).
  json Must(uid_t uid, const std::string& method, const json& params) {
    Outcome o = As(uid, method, params);
    EXPECT_EQ(o.code, 0) << Name(uid) << " " << method << " " << params.dump() << ": " << o.detail;
    return o.result;
  }
  /// Status as root, once the forked callers' sessions are gone.
  json QuietStatus() {
    json s;
    for (int i = 0; i < 1000; ++i) {
      auto r = root_->Call("status");
      s = r ? r->result : json();
      if (s["clients"] == 1) {
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return s;
  }

  std::unique_ptr<Daemon> daemon_;
  std::unique_ptr<client::Client> root_;  // holds a region for the region rows
};

/// One method x the four callers. `params` runs before each call (it may
/// make a fresh object for the call to act on) and `after` after it.
struct Row {
  std::string what;
  std::string method;
  std::function<json()> params;
  std::array<int, 4> expect;  // owner, shared, other, root
  bool memfd = false;
  std::function<void(const Outcome&)> after = {};
};

TEST_F(TenancyTest, EveryMethodByEveryKindOfCaller) {
  // The owner's named container on edu, shared with kShared, and a named
  // mapping in it; the shared user's named mapping in it; root's region.
  json a1 = Must(kOwner, "container.create",
                 {{"devices", {kEdu}}, {"name", "A1"}, {"share_with", {{"users", {kShared}}}}});
  const uint64_t c = a1.value("container", uint64_t{0});
  ASSERT_NE(c, 0u);
  EXPECT_EQ(a1["owner_uid"], kOwner);
  EXPECT_EQ(a1["shared_with"]["users"], json::array({kShared}));
  const uint64_t m = Must(kOwner, "dma.alloc",
                          {{"container", c}, {"size", 4096}, {"backing", "4k"}, {"name", "am"}})
                         .value("mapping", uint64_t{0});
  auto region = root_->Call("dma.register", {{"fd", {{"fd", 0}}}}, [] {
    static UniqueFd f(::memfd_create("root-region", MFD_CLOEXEC | MFD_ALLOW_SEALING));
    (void)!::ftruncate(f.get(), 1 << 20);
    return std::vector<int>{f.get()};
  }());
  ASSERT_CALL_OK(region);
  const uint64_t r = region->result["region"];

  int fresh = 0;
  auto owners_mapping = [&] {
    return json{{"mapping", Must(kOwner, "dma.alloc",
                                 {{"container", c},
                                  {"size", 4096},
                                  {"backing", "4k"},
                                  {"name", "f" + std::to_string(++fresh)}})["mapping"]}};
  };
  auto shared_users_mapping = [&] {
    return json{{"mapping", Must(kShared, "dma.alloc",
                                 {{"container", c},
                                  {"size", 4096},
                                  {"backing", "4k"},
                                  {"name", "s" + std::to_string(++fresh)}})["mapping"]}};
  };
  uint64_t doomed = 0;
  auto fresh_container = [&] {
    doomed = Must(kOwner, "container.create",
                  {{"devices", {kIvshmem}},
                   {"name", "D" + std::to_string(++fresh)},
                   {"share_with", {{"users", {kShared}}}}})["container"];
    return json{{"container", doomed}};
  };
  auto cleanup_container = [&](const Outcome&) {
    (void)root_->Call("container.destroy", {{"container", doomed}});
  };
  auto fixed = [](json p) { return [p] { return p; }; };
  auto in_c = [&](json p) {
    p["container"] = c;
    return [p] { return p; };
  };

  const std::vector<Row> rows = {
      {"info by id", "container.info", in_c({}), {kOk, kOk, kHidden, kOk}},
      {"attach, caller's own names",
       "container.attach",
       fixed({{"name", "A1"}}),
       {kOk, kHidden, kHidden, kHidden}},
      {"attach by owner uid",
       "container.attach",
       fixed({{"name", "A1"}, {"owner", kOwner}}),
       {kOk, kOk, kHidden, kOk}},
      {"share", "container.share", in_c({{"users", {4242}}}), {kOk, kDenied, kHidden, kOk}},
      {"unshare", "container.unshare", in_c({{"users", {4242}}}), {kOk, kDenied, kHidden, kOk}},
      {"destroy by id",
       "container.destroy",
       fresh_container,
       {kOk, kDenied, kHidden, kOk},
       false,
       cleanup_container},
      {"alloc into it",
       "dma.alloc",
       in_c({{"size", 4096}, {"backing", "4k"}}),
       {kOk, kOk, kHidden, kOk}},
      {"map a memfd into it",
       "dma.map_fd",
       in_c({{"fd", {{"fd", 0}}}, {"size", 4096}}),
       {kOk, kOk, kHidden, kOk},
       true},
      {"map a BAR into it",
       "dma.map_bar",
       in_c({{"bdf", kEdu}, {"bar", 0}}),
       {kOk, kOk, kHidden, kOk}},
      {"open its device", "device.open", in_c({{"bdf", kEdu}}), {kOk, kOk, kHidden, kOk}},
      {"list its mappings", "dma.list", in_c({}), {kOk, kOk, kHidden, kOk}},
      {"info of the owner's mapping",
       "dma.info",
       fixed({{"mapping", m}}),
       {kOk, kOk, kHidden, kOk}},
      {"free the owner's mapping", "dma.free", owners_mapping, {kOk, kDenied, kHidden, kOk}},
      {"free the shared user's mapping",
       "dma.free",
       shared_users_mapping,
       {kOk, kOk, kHidden, kOk}},
      {"map from root's region",
       "dma.map_fd",
       in_c({{"region", r}}),
       {kHidden, kHidden, kHidden, kHidden}},
      {"unregister root's region",
       "dma.unregister",
       fixed({{"region", r}}),
       {kHidden, kHidden, kHidden, kHidden}},
  };
  for (const Row& row : rows) {
    for (size_t i = 0; i < kCallers.size(); ++i) {
      const json params = row.params();
      Outcome got = As(kCallers[i], row.method, params, row.memfd);
      EXPECT_EQ(got.code, row.expect[i])
          << row.what << " (" << row.method << " " << params.dump() << ") as " << Name(kCallers[i])
          << ": " << (got.code == 0 ? got.result.dump() : got.detail);
      if (got.code == kHidden && !params.contains("owner")) {  // as for an id nobody holds
        EXPECT_EQ(got.detail.find("uid " + std::to_string(kOwner)), std::string::npos)
            << row.what << ": a hidden object's owner leaked: " << got.detail;
      }
      if (row.after) {
        row.after(got);
      }
    }
  }
  // Listings: the other user sees nothing of the owner's, root everything.
  for (uid_t uid : kCallers) {
    json containers = Must(uid, "container.list", json::object());
    bool sees = std::any_of(containers.begin(), containers.end(),
                            [&](const json& e) { return e["container"] == c; });
    EXPECT_EQ(sees, uid != kOther) << Name(uid);
    json maps = Must(uid, "dma.list", json::object());
    bool sees_m =
        std::any_of(maps.begin(), maps.end(), [&](const json& e) { return e["mapping"] == m; });
    EXPECT_EQ(sees_m, uid != kOther) << Name(uid);
    // Regions are a connection's own: not listed on another's, root's included.
    json regions = Must(uid, "dma.regions", json::object());
    bool sees_r = std::any_of(regions.begin(), regions.end(),
                              [&](const json& e) { return e["region"] == r; });
    EXPECT_FALSE(sees_r) << Name(uid) << " " << regions.dump();
    // device.info: the VFIO view of edu only for those who may use c.
    json info = Must(uid, "device.info", {{"bdf", kEdu}});
    EXPECT_EQ(info.contains("regions"), uid != kOther) << Name(uid) << " " << info.dump();
  }
  // Unsharing stops the shared user at once; the owner's own use goes on.
  Must(kOwner, "container.unshare", {{"container", c}, {"users", {kShared}}});
  EXPECT_EQ(As(kShared, "dma.alloc", {{"container", c}, {"size", 4096}, {"backing", "4k"}}).code,
            kHidden);
  EXPECT_EQ(As(kShared, "container.attach", {{"name", "A1"}, {"owner", kOwner}}).code, kHidden);
  EXPECT_EQ(As(kOwner, "dma.info", {{"mapping", m}}).code, kOk);
  // Group sharing: a caller in the group may use it.
  Must(kOwner, "container.share", {{"container", c}, {"groups", {kOther}}});
  EXPECT_EQ(As(kOther, "container.info", {{"container", c}}).code, kOk);
  Must(kOwner, "container.destroy", {{"container", c}});
}

TEST_F(TenancyTest, NamesArePerOwner) {
  Must(kOwner, "container.create", {{"devices", {kEdu}}, {"name", "ring"}});
  // Another user's "ring" is its own name, not a collision and not squatting.
  json theirs = Must(kOther, "container.create", {{"devices", {kIvshmem}}, {"name", "ring"}});
  EXPECT_EQ(theirs["owner_uid"], kOther);
  EXPECT_EQ(As(kOwner, "container.create", {{"devices", {kIvshmem}}, {"name", "ring"}}).code,
            wire::kBusy);  // the owner's own name is taken (and so is the group)
  json mine = Must(kOwner, "container.attach", {{"name", "ring"}});
  json other = Must(kOther, "container.attach", {{"name", "ring"}});
  EXPECT_NE(mine["container"], other["container"]);
  EXPECT_EQ(mine["owner_uid"], kOwner);
  EXPECT_EQ(other["owner_uid"], kOther);
  // A user name works as the owner, and an unknown one is a params error.
  EXPECT_EQ(As(kRoot, "container.attach", {{"name", "ring"}, {"owner", "no-such-user-x"}}).code,
            wire::kInvalidParams);
  Must(kOwner, "container.destroy", {{"container", mine["container"]}});
  Must(kOther, "container.destroy", {{"container", other["container"]}});
}

TEST_F(TenancyTest, StatusAndStatsShowAUserItsOwnFigures) {
  json c = Must(kOwner, "container.create", {{"devices", {kEdu}}, {"name", "mine"}});
  Must(kOwner, "dma.alloc",
       {{"container", c["container"]}, {"size", 1 << 20}, {"backing", "4k"}, {"name", "b"}});
  // The sessions of the owner's earlier calls close a moment after their
  // processes exit: once they have, status counts the caller's own session
  // only (root's, and the earlier ones, are not its figures).
  json owner;
  for (int i = 0; i < 200; ++i) {
    owner = Must(kOwner, "status", json::object());
    if (owner["clients"] == 1) {
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(owner["containers"], 1);
  EXPECT_EQ(owner["mappings"], 1);
  EXPECT_EQ(owner["locked_bytes"], 1 << 20);
  EXPECT_EQ(owner["clients"], 1);  // its own session only
  json other = Must(kOther, "status", json::object());
  EXPECT_EQ(other["containers"], 0);
  EXPECT_EQ(other["mappings"], 0);
  EXPECT_EQ(other["locked_bytes"], 0);
  EXPECT_EQ(other["dma_entries"], 0);
  json totals = QuietStatus();
  EXPECT_EQ(totals["containers"], 1);
  EXPECT_EQ(totals["locked_bytes"], 1 << 20);
  json theirs = Must(kOther, "stats", json::object());
  EXPECT_EQ(theirs["map"]["calls"], 0);  // the owner's map is not its figure
  EXPECT_FALSE(theirs["by_method"].contains("dma.alloc"));
  json all = root_->Call("stats")->result;
  EXPECT_EQ(all["map"]["calls"], 1);
  Must(kOwner, "container.destroy", {{"container", c["container"]}});
}

TEST_F(TenancyTest, ASharedContainersMappingsAreChargedToWhoMappedThem) {
  json c = Must(kOwner, "container.create",
                {{"devices", {kEdu}}, {"name", "lent"}, {"share_with", {{"users", {kShared}}}}});
  Must(kShared, "dma.alloc",
       {{"container", c["container"]}, {"size", 1 << 16}, {"backing", "4k"}, {"name", "s"}});
  json shared = Must(kShared, "status", json::object());
  EXPECT_EQ(shared["mappings"], 1);
  EXPECT_EQ(shared["locked_bytes"], 1 << 16);
  json owner = Must(kOwner, "status", json::object());
  EXPECT_EQ(owner["mappings"], 0);
  EXPECT_EQ(owner["locked_bytes"], 0);
  // The mapper's quota (64 MiB) is what runs out, not the owner's.
  Outcome over = As(kShared, "dma.alloc",
                    {{"container", c["container"]}, {"size", 64 << 20}, {"backing", "4k"}});
  EXPECT_EQ(over.code, wire::kQuotaExceeded) << over.detail;
  // Destroying the container gives the bytes back to the mapper.
  Must(kOwner, "container.destroy", {{"container", c["container"]}});
  EXPECT_EQ(Must(kShared, "status", json::object())["locked_bytes"], 0);
  EXPECT_EQ(QuietStatus()["locked_bytes"], 0);
}

TEST_F(TenancyTest, DeviceInfoOpensNothingAndHidesOthersVfioDetails) {
  // Nobody holds edu: device.info reads sysfs and config space only.
  json free_info = Must(kOther, "device.info", {{"bdf", kEdu}});
  EXPECT_FALSE(free_info.contains("regions")) << free_info.dump();
  ASSERT_TRUE(free_info.contains("config")) << free_info.dump();
  EXPECT_EQ(free_info["config"]["msi_vectors"], 1);
  EXPECT_EQ(free_info["config"]["interrupt_pin"], 1);
  // The owner's container holds it: the owner sees the VFIO view, others do not.
  json c = Must(kOwner, "container.create", {{"devices", {kEdu}}, {"name", "held"}});
  json others = Must(kOther, "device.info", {{"bdf", kEdu}});
  EXPECT_FALSE(others.contains("regions"));
  json owners = Must(kOwner, "device.info", {{"bdf", kEdu}});
  EXPECT_TRUE(owners.contains("regions")) << owners.dump();
  // device.info made no container of its own: while it runs as root for a
  // free group, the group is never taken (creating a container still works).
  Must(kOwner, "container.destroy", {{"container", c["container"]}});
  for (int i = 0; i < 20; ++i) {
    EXPECT_EQ(As(kOther, "device.info", {{"bdf", kIvshmem}}).code, 0);
    json d = Must(kOwner, "container.create", {{"devices", {kIvshmem}}, {"name", "race"}});
    Must(kOwner, "container.destroy", {{"container", d["container"]}});
  }
}

TEST_F(TenancyTest, ADeviceFdThatOutlivesItsContainerKeepsItsGroupCharged) {
  // The holder (quota: one container) opens edu's device fd and keeps it
  // while its container is destroyed.
  ForkedClient holder(
      daemon_->socket(),
      [](client::Client& cl, const ForkedClient::Signal& signal) {
        auto made = cl.Call("container.create", {{"devices", {kEdu}}, {"name", "gone"}});
        if (!made) {
          return 2;
        }
        const json id = made->result["container"];
        auto dev = cl.Call("device.open", {{"container", id}, {"bdf", kEdu}});
        if (!dev || dev->fds.size() != 1) {
          return 3;
        }
        if (!cl.Call("container.destroy", {{"container", id}})) {
          return 4;
        }
        static std::vector<UniqueFd> kept;  // the device fd stays open in this process
        kept.push_back(std::move(dev->fds[0]));
        signal('d');
        return 0;  // then waits to be killed
      },
      static_cast<int>(kHolder));
  ASSERT_TRUE(holder.started());
  ASSERT_EQ(holder.Next(), 'd');
  json s = QuietStatus();
  EXPECT_EQ(s["containers"], 0);
  ASSERT_EQ(s["lingering"].size(), 1u) << s.dump();
  EXPECT_EQ(s["lingering"][0]["holders"], json::array({kHolder}));
  EXPECT_EQ(s["lingering"][0]["groups"], json::array({3}));
  // The group is busy for everyone, and unbind is refused at once, naming the
  // holder (the model aborts the daemon where Linux would block).
  Outcome busy = As(kOther, "container.create", {{"devices", {kEdu}}});
  EXPECT_EQ(busy.code, wire::kBusy) << busy.detail;
  EXPECT_NE(busy.detail.find("uid 1003"), std::string::npos) << busy.detail;
  auto unbind = root_->Call("device.unbind", {{"bdf", kEdu}});
  EXPECT_EQ(CodeOf(unbind), wire::kBusy);
  EXPECT_NE(DetailOf(unbind).find("uid 1003"), std::string::npos) << DetailOf(unbind);
  // Still charged to the holder: its one container is used up.
  EXPECT_EQ(As(kHolder, "container.create", {{"devices", {kIvshmem}}}).code, wire::kQuotaExceeded);
  EXPECT_EQ(Must(kHolder, "status", json::object())["lingering"].size(), 1u);
  EXPECT_EQ(Must(kOther, "status", json::object())["lingering"].size(), 0u);
  // The fd closes with the process: everything returns to baseline.
  holder.Kill();
  json after = AwaitStatus([&] { return QuietStatus(); },
                           [](const json& st) { return st["lingering"].empty(); });
  EXPECT_TRUE(after["lingering"].empty()) << after.dump();
  EXPECT_EQ(As(kHolder, "container.create", {{"devices", {kIvshmem}}}).code, kOk);
  json again = Must(kOther, "container.create", {{"devices", {kEdu}}, {"name", "free"}});
  Must(kOther, "container.destroy", {{"container", again["container"]}});
  auto unbound = root_->Call("device.unbind", {{"bdf", kEdu}});
  EXPECT_TRUE(unbound.has_value()) << unbound.error().Describe();
}

}  // namespace
}  // namespace vfiod::itest
