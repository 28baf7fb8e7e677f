// Registered client memory regions against the real vfiod binary on the model
// kernel: register once, map and free slices without passing the fd again,
// unregister while mapped, isolation between connections, the documented
// error codes, and what a killed client leaves behind.
#include <gtest/gtest.h>
#include <linux/memfd.h>
#include <sys/mman.h>
#include <sys/syscall.h>

#include <thread>

#include "forked_client.h"
#include "model_daemon_fixture.h"
#include "proto/errors.h"

namespace vfiod::itest {
namespace {

constexpr uint64_t kRegionBytes = 1 << 20;
constexpr int kMaxRegions = 3;

/// A memfd of `size` bytes that allows sealing (vfiod seals it).
UniqueFd MakeMemfd(uint64_t size) {
  UniqueFd fd(static_cast<int>(
      ::syscall(SYS_memfd_create, "region-itest", MFD_CLOEXEC | MFD_ALLOW_SEALING)));
  if (fd.valid() && ::ftruncate(fd.get(), static_cast<off_t>(size)) != 0) {
    return UniqueFd();
  }
  return fd;
}

class RegionTest : public ModelDaemonTest {
 protected:
  void SetUp() override {
    ModelDaemonTest::SetUp();
    if (IsSkipped()) {
      return;
    }
    auto c = Call("container.create", {{"devices", {kEdu}}});
    ASSERT_CALL_OK(c);
    container_ = c->result["container"];
  }
  std::unique_ptr<Daemon> MakeDaemon() override {
    return std::make_unique<Daemon>(Daemon::DefaultPolicy(), "2M", Launch::kDirect,
                                    json{{"max_regions", kMaxRegions}});
  }
  /// Registers a fresh memfd of kRegionBytes; returns the region id (0 on failure).
  uint64_t Register(client::Client& c, json extra = json::object()) {
    UniqueFd memfd = MakeMemfd(kRegionBytes);
    EXPECT_TRUE(memfd.valid());
    const int fds[] = {memfd.get()};
    extra["fd"] = json{{"fd", 0}};
    auto r = c.Call("dma.register", extra, fds);
    EXPECT_TRUE(r.has_value()) << r.error().Describe();
    return r ? r->result["region"].get<uint64_t>() : 0;
  }
  client::CallResult MapSlice(client::Client& c, uint64_t region, uint64_t offset,
                              std::optional<uint64_t> size) {
    json params = {{"container", container_}, {"region", region}, {"offset", offset}};
    if (size) {
      params["size"] = *size;
    }
    return c.Call("dma.map_fd", params);
  }

  uint64_t container_ = 0;
};

TEST_F(RegionTest, RegisterMapSlicesFreeAndUnregister) {
  UniqueFd memfd = MakeMemfd(kRegionBytes);
  ASSERT_TRUE(memfd.valid());
  const int fds[] = {memfd.get()};
  auto reg = Call("dma.register", {{"fd", {{"fd", 0}}}, {"offset", 4096}}, fds);
  ASSERT_CALL_OK(reg);
  const uint64_t region = reg->result["region"];
  EXPECT_EQ(reg->result["size"], kRegionBytes - 4096);
  EXPECT_EQ(reg->result["page_size"], 4096);
  EXPECT_EQ(reg->result["backing"], "memfd");
  EXPECT_EQ(reg->result["file_offset"], 4096);
  // vfiod sealed the file against shrinking.
  EXPECT_NE(::fcntl(memfd.get(), F_GET_SEALS) & F_SEAL_SHRINK, 0);
  EXPECT_EQ(Status()["locked_bytes"], 0) << "registering pins nothing";

  auto listed = Call("dma.regions");
  ASSERT_CALL_OK(listed);
  ASSERT_EQ(listed->result.size(), 1u);
  EXPECT_EQ(listed->result[0]["region"], region);

  std::vector<uint64_t> mappings;
  for (uint64_t slice = 0; slice < 4; ++slice) {
    auto m = MapSlice(*client_, region, slice * 8192, 8192);
    ASSERT_CALL_OK(m);
    EXPECT_EQ(m->result["size"], 8192);
    EXPECT_EQ(m->result["segments"][0]["offset"], slice * 8192);
    mappings.push_back(m->result["mapping"]);
  }
  // Size omitted: the rest of the region.
  auto rest = MapSlice(*client_, region, 65536, std::nullopt);
  ASSERT_CALL_OK(rest);
  EXPECT_EQ(rest->result["size"], kRegionBytes - 4096 - 65536);
  mappings.push_back(rest->result["mapping"]);
  EXPECT_EQ(Status()["locked_bytes"], 4 * 8192 + (kRegionBytes - 4096 - 65536));

  // The model's type1 state holds exactly these ranges.
  auto info = Call("container.info", {{"container", container_}});
  ASSERT_CALL_OK(info);
  EXPECT_EQ(info->result["mappings"].size(), mappings.size());
  for (uint64_t id : mappings) {
    auto freed = Call("dma.free", {{"mapping", id}});
    ASSERT_CALL_OK(freed);
  }
  EXPECT_EQ(Status()["locked_bytes"], 0);
  EXPECT_EQ(Status()["dma_entries"], 0);
  auto unreg = Call("dma.unregister", {{"region", region}});
  ASSERT_CALL_OK(unreg);
  EXPECT_EQ(unreg->result["region"], region);
  EXPECT_EQ(Call("dma.regions")->result.size(), 0u);
  EXPECT_EQ(CodeOf(MapSlice(*client_, region, 0, 4096)), wire::kNotFound);
}

TEST_F(RegionTest, UnregisterWhileMappedKeepsTheMappingUntilFreed) {
  uint64_t region = Register(*client_);
  auto m = MapSlice(*client_, region, 0, 65536);
  ASSERT_CALL_OK(m);
  const uint64_t mapping = m->result["mapping"];
  ASSERT_CALL_OK(Call("dma.unregister", {{"region", region}}));
  // Still mapped, still pinned, still described.
  auto info = Call("dma.info", {{"mapping", mapping}});
  ASSERT_CALL_OK(info);
  EXPECT_EQ(info->result["size"], 65536);
  EXPECT_EQ(Status()["locked_bytes"], 65536);
  EXPECT_EQ(Status()["mappings"], 1);
  // The id is gone for new maps and for a second unregister.
  EXPECT_EQ(CodeOf(MapSlice(*client_, region, 65536, 4096)), wire::kNotFound);
  EXPECT_EQ(CodeOf(Call("dma.unregister", {{"region", region}})), wire::kNotFound);
  auto freed = Call("dma.free", {{"mapping", mapping}});
  ASSERT_CALL_OK(freed);
  EXPECT_EQ(freed->result["unmapped_bytes"], 65536);
  EXPECT_EQ(Status()["locked_bytes"], 0);
}

TEST_F(RegionTest, AnotherClientCannotNameTheRegion) {
  uint64_t region = Register(*client_);
  client::Client other = daemon_->Connect();
  // Root, and attached to nothing: the region is invisible all the same.
  EXPECT_EQ(CodeOf(MapSlice(other, region, 0, 4096)), wire::kNotFound);
  EXPECT_EQ(CodeOf(other.Call("dma.unregister", {{"region", region}})), wire::kNotFound);
  auto listed = other.Call("dma.regions", json::object());
  ASSERT_CALL_OK(listed);
  EXPECT_EQ(listed->result.size(), 0u);
  // The owner still has it.
  EXPECT_TRUE(MapSlice(*client_, region, 0, 4096).has_value());
}

TEST_F(RegionTest, BadRequestsGetTheirDocumentedCodes) {
  uint64_t region = Register(*client_);
  UniqueFd memfd = MakeMemfd(kRegionBytes);
  const int fds[] = {memfd.get()};
  struct Case {
    const char* what;
    json params;
    int code;
    bool with_fd = false;
  };
  const json c = container_;
  std::vector<Case> cases = {
      {"neither fd nor region", {{"container", c}, {"size", 4096}}, wire::kInvalidParams},
      {"both fd and region",
       {{"container", c}, {"fd", {{"fd", 0}}}, {"region", region}, {"size", 4096}},
       wire::kInvalidParams,
       true},
      {"misaligned offset",
       {{"container", c}, {"region", region}, {"offset", 100}, {"size", 4096}},
       wire::kInvalidParams},
      {"misaligned size",
       {{"container", c}, {"region", region}, {"size", 4097}},
       wire::kInvalidParams},
      {"past the end",
       {{"container", c}, {"region", region}, {"offset", kRegionBytes - 4096}, {"size", 8192}},
       wire::kInvalidParams},
      {"offset at the end",
       {{"container", c}, {"region", region}, {"offset", kRegionBytes}},
       wire::kInvalidParams},
      {"region of a string", {{"container", c}, {"region", "one"}}, wire::kInvalidParams},
      {"unknown region", {{"container", c}, {"region", region + 1000}}, wire::kNotFound},
      {"unknown container", {{"container", 999}, {"region", region}}, wire::kNotFound},
  };
  for (const auto& k : cases) {
    auto r = k.with_fd ? Call("dma.map_fd", k.params, fds) : Call("dma.map_fd", k.params);
    EXPECT_EQ(CodeOf(r), k.code) << k.what << ": " << (r ? r->result.dump() : r.error().Describe());
  }
  // Register: no fd carried, a pipe, a misaligned offset, an offset past the end.
  EXPECT_EQ(CodeOf(Call("dma.register", {{"fd", {{"fd", 0}}}})), wire::kFdError);
  int p[2];
  ASSERT_EQ(::pipe2(p, O_CLOEXEC), 0);
  UniqueFd r0(p[0]), r1(p[1]);
  const int pipe_fds[] = {p[0]};
  EXPECT_EQ(CodeOf(Call("dma.register", {{"fd", {{"fd", 0}}}}, pipe_fds)), wire::kFdError);
  EXPECT_EQ(CodeOf(Call("dma.register", {{"fd", {{"fd", 0}}}, {"offset", 10}}, fds)),
            wire::kInvalidParams);
  EXPECT_EQ(CodeOf(Call("dma.register", {{"fd", {{"fd", 0}}}, {"offset", kRegionBytes}}, fds)),
            wire::kInvalidParams);
  EXPECT_EQ(CodeOf(Call("dma.register", {{"fd", {{"fd", 0}}}, {"size", 2 * kRegionBytes}}, fds)),
            wire::kFdError);
  EXPECT_EQ(CodeOf(Call("dma.unregister", json::object())), wire::kInvalidParams);
  EXPECT_EQ(Status()["mappings"], 0);
}

TEST_F(RegionTest, ScatterListIsOneMappingPlacedBackToBack) {
  uint64_t region = Register(*client_);
  json segments = json::array({{{"offset", 0}, {"size", 8192}},
                               {{"offset", 65536}, {"size", 4096}},
                               {{"offset", 16384}, {"size", 4096}}});
  auto m =
      Call("dma.map_fd", {{"container", container_}, {"region", region}, {"segments", segments}});
  ASSERT_CALL_OK(m);
  EXPECT_EQ(m->result["size"], 16384);
  const json& placed = m->result["segments"];
  ASSERT_EQ(placed.size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(placed[i]["offset"], segments[i]["offset"]);
    EXPECT_EQ(placed[i]["size"], segments[i]["size"]);
  }
  EXPECT_EQ(placed[0]["iova"], m->result["iova"]);
  EXPECT_EQ(placed[1]["iova"].get<uint64_t>(), placed[0]["iova"].get<uint64_t>() + 8192);
  EXPECT_EQ(placed[2]["iova"].get<uint64_t>(), placed[1]["iova"].get<uint64_t>() + 4096);
  // Three pieces that are not adjacent in the region: three VFIO entries, as
  // the model's type1 state holds them.
  EXPECT_EQ(Status()["mappings"], 1);
  EXPECT_EQ(Status()["dma_entries"], 3);
  EXPECT_EQ(Status()["locked_bytes"], 16384);
  auto info = Call("dma.info", {{"mapping", m->result["mapping"]}});
  ASSERT_CALL_OK(info);
  EXPECT_EQ(info->result["segments"], placed);
  EXPECT_EQ(info->result["chunks"], 3);
  auto freed = Call("dma.free", {{"mapping", m->result["mapping"]}});
  ASSERT_CALL_OK(freed);
  EXPECT_EQ(freed->result["unmapped_bytes"], 16384);
  EXPECT_EQ(Status()["dma_entries"], 0);
}

TEST_F(RegionTest, ScatterListAtNamedIovasAndOfAPassedFd) {
  uint64_t region = Register(*client_);
  json named = json::array({{{"offset", 0}, {"size", 4096}, {"iova", 0x200000}},
                            {{"offset", 4096}, {"size", 4096}, {"iova", 0x100000}}});
  auto m = Call("dma.map_fd", {{"container", container_}, {"region", region}, {"segments", named}});
  ASSERT_CALL_OK(m);
  EXPECT_EQ(m->result["segments"][0]["iova"], 0x200000);
  EXPECT_EQ(m->result["segments"][1]["iova"], 0x100000);
  // All or nothing: a second list whose last piece hits the first mapping
  // leaves nothing of itself behind.
  json clash = json::array({{{"offset", 8192}, {"size", 4096}, {"iova", 0x300000}},
                            {{"offset", 12288}, {"size", 4096}, {"iova", 0x100000}}});
  auto refused =
      Call("dma.map_fd", {{"container", container_}, {"region", region}, {"segments", clash}});
  EXPECT_EQ(CodeOf(refused), wire::kKernelError);
  EXPECT_EQ(Status()["mappings"], 1);
  EXPECT_EQ(Status()["dma_entries"], 2);
  // The fd form: segment offsets are file offsets.
  UniqueFd memfd = MakeMemfd(kRegionBytes);
  const int fds[] = {memfd.get()};
  json pieces =
      json::array({{{"offset", 0x20000}, {"size", 4096}}, {{"offset", 0}, {"size", 4096}}});
  auto f = Call("dma.map_fd",
                {{"container", container_}, {"fd", {{"fd", 0}}}, {"segments", pieces}}, fds);
  ASSERT_CALL_OK(f);
  EXPECT_EQ(f->result["segments"][0]["offset"], 0x20000);
  EXPECT_EQ(f->result["segments"][1]["offset"], 0);
  EXPECT_EQ(f->result["segments"][1]["iova"].get<uint64_t>(),
            f->result["segments"][0]["iova"].get<uint64_t>() + 4096);
  EXPECT_EQ(Status()["mappings"], 2);
}

TEST_F(RegionTest, BadScatterListsNameTheSegment) {
  uint64_t region = Register(*client_);
  auto seg = [](uint64_t offset, uint64_t size) {
    return json{{"offset", offset}, {"size", size}};
  };
  auto at = [](uint64_t offset, uint64_t size, uint64_t iova) {
    return json{{"offset", offset}, {"size", size}, {"iova", iova}};
  };
  json too_many = json::array();
  for (int i = 0; i < 4097; ++i) {
    too_many.push_back(seg(0, 4096));
  }
  struct Case {
    json segments;
    std::string detail;
    json extra = json::object();
  };
  std::vector<Case> cases = {
      {json::array(), "params.segments: must list"},
      {too_many, "at most 4096"},
      {json::array({seg(0, 4096), seg(4096, 0)}), "params.segments[1].size"},
      {json::array({seg(0, 4096), seg(4096, 4096), seg(100, 4096)}), "params.segments[2].offset"},
      {json::array({seg(0, 4096), seg(4096, 4097)}), "params.segments[1].size"},
      {json::array({at(0, 8192, 0x100000), at(8192, 4096, 0x101000)}),
       "params.segments[1].iova: overlaps segment 0"},
      {json::array({at(0, 4096, 0x100000), seg(4096, 4096)}), "params.segments[1].iova: either"},
      {json::array({seg(0, 4096), seg(kRegionBytes - 4096, 8192)}), "params.segments[1]"},
      {json::array({seg(0, 4096), seg(kRegionBytes, 4096)}), "params.segments[1]"},
      {json::array({seg(0, 4096)}), "params.offset", {{"offset", 0}}},
      {json::array({seg(0, 4096)}), "params.size", {{"size", 4096}}},
      {json::array({at(0, 4096, 0x100000)}), "params.iova", {{"iova", 0x200000}}},
      {json::array({json{{"offset", 0}}}), "params.segments[0].size"},
      {json::array({json{{"offset", 0}, {"size", 4096}, {"colour", 1}}}),
       "params.segments[0].colour"},
      {json{{"offset", 0}}, "params.segments: expected an array"},
  };
  for (const auto& k : cases) {
    json params = {{"container", container_}, {"region", region}, {"segments", k.segments}};
    params.update(k.extra);
    auto r = Call("dma.map_fd", params);
    EXPECT_EQ(CodeOf(r), wire::kInvalidParams) << k.detail;
    EXPECT_NE(DetailOf(r).find(k.detail), std::string::npos) << DetailOf(r);
  }
  EXPECT_EQ(Status()["mappings"], 0);
  EXPECT_EQ(Status()["locked_bytes"], 0);
}

TEST_F(RegionTest, RegionsPerConnectionAreCapped) {
  for (int i = 0; i < kMaxRegions; ++i) {
    EXPECT_NE(Register(*client_), 0u);
  }
  UniqueFd memfd = MakeMemfd(kRegionBytes);
  const int fds[] = {memfd.get()};
  auto over = Call("dma.register", {{"fd", {{"fd", 0}}}}, fds);
  EXPECT_EQ(CodeOf(over), wire::kQuotaExceeded);
  // The cap is per connection, and unregistering makes room again.
  client::Client other = daemon_->Connect();
  EXPECT_NE(Register(other), 0u);
  uint64_t first = Call("dma.regions")->result[0]["region"];
  ASSERT_CALL_OK(Call("dma.unregister", {{"region", first}}));
  EXPECT_NE(Register(*client_), 0u);
}

TEST_F(RegionTest, KilledClientWithRegionsAndMappingsLeavesTheFiguresWhereTheyWere) {
  uint64_t mine = Register(*client_);
  ASSERT_CALL_OK(MapSlice(*client_, mine, 0, 8192));
  json before = Status();
  ForkedClient killed(daemon_->socket(), [this](client::Client& c,
                                                const ForkedClient::Signal& signal) {
    auto made = c.Call("container.create", {{"devices", {kIvshmem}}});
    uint64_t region = Register(c);
    if (!made || region == 0) {
      return 2;
    }
    json params = {{"container", made->result["container"]}, {"region", region}, {"size", 4096}};
    for (uint64_t offset = 0; offset < 16 * 4096; offset += 4096) {
      params["offset"] = offset;
      if (!c.Call("dma.map_fd", params)) {
        return 3;
      }
    }
    signal('r');
    return 0;
  });
  ASSERT_TRUE(killed.started());
  ASSERT_EQ(killed.Next(), 'r');
  EXPECT_EQ(Status()["mappings"], before["mappings"].get<uint64_t>() + 16);
  killed.Kill();
  json after = AwaitStatus(
      [&] { return Status(); },
      [&](const json& s) { return s["clients"] == 1 && s["mappings"] == before["mappings"]; });
  EXPECT_EQ(after["containers"], before["containers"]);
  EXPECT_EQ(after["mappings"], before["mappings"]);
  EXPECT_EQ(after["locked_bytes"], before["locked_bytes"]);
  EXPECT_EQ(after["dma_entries"], before["dma_entries"]);
  // This client's region and mapping are untouched.
  EXPECT_EQ(Call("dma.regions")->result.size(), 1u);
  EXPECT_TRUE(MapSlice(*client_, mine, 8192, 4096).has_value());
}

}  // namespace
}  // namespace vfiod::itest
