// The real vfiod (model kernel) exports its figures in the Prometheus text
// format: every line of the `metrics` method's text passes the tests' strict
// parser (support/prom_parser.h), and after maps, frees and failures the
// figures agree with what `stats`, `status` and `container.info` say. A
// non-root caller sees its own uid's figures only. With metrics.textfile set
// the daemon writes the same text to that file (mode 0644, rewritten at
// metrics.interval_seconds, removed at exit), and a missing directory does
// not stop it.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cmath>

#include "as_user.h"
#include "model_daemon_fixture.h"
#include "support/prom_parser.h"

namespace vfiod::itest {
namespace {

using promtest::ParsePrometheusText;
using promtest::PromLabels;
using promtest::PromText;

/// The metrics text of `client`'s view, parsed strictly ("" error: fine).
std::expected<PromText, std::string> Scrape(client::Client& client) {
  auto r = client.Call("metrics");
  if (!r) {
    return std::unexpected("metrics: " + r.error().Describe());
  }
  if (r->result.value("content_type", "") != "text/plain; version=0.0.4") {
    return std::unexpected("content_type " + r->result.dump());
  }
  auto parsed = ParsePrometheusText(r->result.value("text", ""));
  if (!parsed) {
    return std::unexpected(parsed.error() + "\n" + r->result.value("text", ""));
  }
  return parsed;
}

double Sum(const PromText& m, const std::string& name) {
  double total = 0;
  for (const auto& s : m.All(name)) {
    total += s.value;
  }
  return total;
}

class MetricsTest : public ModelDaemonTest {
 protected:
  json Must(const std::string& method, const json& params = json::object()) {
    auto r = Call(method, params);
    EXPECT_TRUE(r.has_value()) << method << ": " << (r ? "" : r.error().Describe());
    return r ? r->result : json();
  }
};

TEST_F(MetricsTest, EveryLineParsesAndAgreesWithStatsAndStatus) {
  // Names are letters, digits, '.', '_' and '-' (the escaping of label
  // values is unit-tested in tests/service/metrics_render_test.cc).
  const std::string name = "ring.q-1_x";
  json c = Must("container.create", {{"devices", {kEdu}}, {"name", name}});
  const uint64_t container = c.value("container", uint64_t{0});
  std::vector<uint64_t> mappings;
  for (uint64_t size : {64 << 10, 2 << 20, 4 << 10}) {
    json m = Must("dma.alloc", {{"container", container}, {"size", size}, {"backing", "4k"}});
    mappings.push_back(m.value("mapping", uint64_t{0}));
  }
  Must("dma.free", {{"mapping", mappings[0]}});
  EXPECT_FALSE(Call("dma.free", {{"mapping", 999999}}).has_value());  // not_found
  EXPECT_FALSE(
      Call("dma.alloc", {{"container", container}, {"size", 0}, {"backing", "4k"}}).has_value());

  const json stats = Must("stats");
  const json status = Must("status");
  const json info = Must("container.info", {{"container", container}});
  auto scraped = Scrape(*client_);
  ASSERT_TRUE(scraped.has_value()) << scraped.error();
  const PromText& m = *scraped;

  // Requests and errors per method (methods not called since `stats`).
  for (const char* method : {"container.create", "dma.alloc", "dma.free"}) {
    SCOPED_TRACE(method);
    const json& by = stats["by_method"][method];
    EXPECT_EQ(m.Value("vfiod_requests_total", {{"method", method}}), by["calls"].get<double>());
    double errors = 0;
    for (const auto& [code, n] : by["errors_by_code"].items()) {
      EXPECT_EQ(m.Value("vfiod_request_errors_total", {{"method", method}, {"code", code}}),
                n.get<double>());
      errors += n.get<double>();
    }
    EXPECT_EQ(errors, by["errors"].get<double>());
    EXPECT_NEAR(m.Value("vfiod_request_seconds_total", {{"method", method}}).value_or(-1),
                by["total_us"].get<double>() / 1e6, 1e-9);
  }
  EXPECT_EQ(m.Value("vfiod_request_errors_total", {{"method", "dma.free"}, {"code", "not_found"}}),
            1);
  EXPECT_EQ(
      m.Value("vfiod_request_errors_total", {{"method", "dma.alloc"}, {"code", "invalid_params"}}),
      1);

  // Map and unmap: counters and histograms against the JSON's buckets.
  for (const char* what : {"map", "unmap"}) {
    SCOPED_TRACE(what);
    const json& j = stats[what];
    const std::string base = std::string("vfiod_") + what;
    EXPECT_EQ(m.Value(base + "_bytes_total"), j["bytes"].get<double>());
    EXPECT_EQ(m.Value(base + "_ioctls_total"), j["ioctls"].get<double>());
    EXPECT_EQ(m.Value(base + "_duration_seconds_count"), j["calls"].get<double>());
    EXPECT_NEAR(m.Value(base + "_duration_seconds_sum").value_or(-1),
                j["latency"]["sum_us"].get<double>() / 1e6, 1e-9);
    const json& bounds = j["latency"]["bounds_us"];
    const json& counts = j["latency"]["counts"];
    ASSERT_EQ(counts.size(), bounds.size() + 1);
    auto buckets = m.All(base + "_duration_seconds_bucket");
    ASSERT_EQ(buckets.size(), counts.size());
    double cumulative = 0;
    for (size_t i = 0; i < counts.size(); ++i) {
      cumulative += counts[i].get<double>();
      const double le = i < bounds.size() ? bounds[i].get<double>() / 1e6 : HUGE_VAL;
      EXPECT_EQ(std::strtod(buckets[i].labels.at("le").c_str(), nullptr), le);
      EXPECT_EQ(buckets[i].value, cumulative);
    }
  }
  EXPECT_EQ(stats["map"]["calls"], 3);
  EXPECT_EQ(stats["unmap"]["calls"], 1);

  // What is held: the status figures, per user and per container.
  EXPECT_EQ(m.Value("vfiod_containers"), status["containers"].get<double>());
  EXPECT_EQ(m.Value("vfiod_mappings"), status["mappings"].get<double>());
  EXPECT_EQ(m.Value("vfiod_mappings"), 2);
  EXPECT_EQ(m.Value("vfiod_locked_bytes"), status["locked_bytes"].get<double>());
  EXPECT_EQ(m.Value("vfiod_region_locked_bytes"), status["region_locked_bytes"].get<double>());
  EXPECT_EQ(m.Value("vfiod_dma_entries"), status["dma_entries"].get<double>());
  EXPECT_EQ(m.Value("vfiod_lingering_containers"), status["lingering"].size());
  EXPECT_EQ(m.Value("vfiod_max_locked_bytes"), status["max_locked_bytes"].get<double>());
  EXPECT_EQ(m.Value("vfiod_user_locked_bytes", {{"uid", "0"}}), (2 << 20) + 4096);
  EXPECT_EQ(Sum(m, "vfiod_user_locked_bytes"), status["locked_bytes"].get<double>());
  EXPECT_EQ(Sum(m, "vfiod_user_mappings"), status["mappings"].get<double>());
  EXPECT_EQ(Sum(m, "vfiod_user_containers"), status["containers"].get<double>());
  const PromLabels labels = {
      {"container", std::to_string(container)}, {"name", name}, {"owner_uid", "0"}};
  EXPECT_EQ(m.Value("vfiod_container_dma_entries_available", labels),
            info["dma_avail"].get<double>());
  EXPECT_EQ(m.Value("vfiod_container_dma_entries", labels), info["dma_entries_used"].get<double>());
  EXPECT_EQ(m.Value("vfiod_container_mappings", labels), 2);
  EXPECT_EQ(
      m.Value("vfiod_info", {{"version", status["version"]},
                             {"api_version", std::to_string(status["api_version"].get<int>())},
                             {"kernel", "model"}}),
      1);
}

TEST_F(MetricsTest, ANonRootCallerSeesItsOwnFiguresOnly) {
  json c = Must("container.create", {{"devices", {kEdu}}, {"name", "roots"}});
  Must("dma.alloc",
       {{"container", c["container"]}, {"size", 65536}, {"backing", "4k"}, {"name", "r"}});
  std::string failure = RunAs(kNobody, kNobody, [&]() -> std::string {
    client::Client mine = daemon_->Connect();
    auto made = mine.Call("container.create", {{"devices", {kEdu}}});
    if (made) {
      return "nobody could take edu from root's container";
    }
    auto scraped = Scrape(mine);
    if (!scraped) {
      return scraped.error();
    }
    const PromText& m = *scraped;
    for (const char* family : {"vfiod_user_locked_bytes", "vfiod_container_mappings"}) {
      for (const auto& s : m.All(family)) {
        if (s.labels.contains("uid") && s.labels.at("uid") != std::to_string(kNobody)) {
          return std::string(family) + " shows uid " + s.labels.at("uid");
        }
        if (s.labels.contains("owner_uid")) {
          return std::string(family) + " shows root's container";
        }
      }
    }
    if (m.Value("vfiod_mappings") != 0 || m.Value("vfiod_locked_bytes") != 0) {
      return "root's mapping is counted for nobody";
    }
    if (m.Value("vfiod_requests_total", {{"method", "dma.alloc"}}).has_value()) {
      return "root's requests are counted for nobody";
    }
    double failed_creates = 0;
    for (const auto& s : m.All("vfiod_request_errors_total")) {
      failed_creates += s.labels.at("method") == "container.create" ? s.value : 0;
    }
    if (failed_creates != 1) {
      return "nobody's own failed container.create is not counted once";
    }
    return "";
  });
  EXPECT_EQ(failure, "");
}

/// A daemon writing its textfile into `dir`/sub/vfiod.prom every second.
class TextfileDaemonTest : public ModelDaemonTest {
 protected:
  std::unique_ptr<Daemon> MakeDaemon() override {
    std::string tmpl = (fs::temp_directory_path() / "vfiod-prom-XXXXXX").string();
    dir_ = ::mkdtemp(tmpl.data());
    target_ = dir_ / SubDir() / "vfiod.prom";
    return std::make_unique<Daemon>(
        Daemon::DefaultPolicy(), "2M", Launch::kDirect, json::object(),
        json{{"metrics", {{"textfile", target_.string()}, {"interval_seconds", 1}}}});
  }
  void TearDown() override {
    ModelDaemonTest::TearDown();
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  virtual std::string SubDir() const { return "."; }
  /// Waits (a bound on a hang, not a timing assertion) for the textfile to
  /// parse and satisfy `want`; returns the last parse.
  template <class Want>
  std::expected<PromText, std::string> WaitForFile(Want want) {
    std::expected<PromText, std::string> last = std::unexpected("no file");
    for (int i = 0; i < 600; ++i) {
      std::string text = ReadAll(target_);
      if (!text.empty()) {
        last = ParsePrometheusText(text);
        if (!last) {
          return last;  // a file that does not parse is never fine
        }
        if (want(*last)) {
          return last;
        }
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return last;
  }

  fs::path dir_;
  fs::path target_;
};

TEST_F(TextfileDaemonTest, DaemonWritesTheTextfile) {
  auto first = WaitForFile([](const PromText&) { return true; });
  ASSERT_TRUE(first.has_value()) << first.error();
  struct stat st {};
  ASSERT_EQ(::stat(target_.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0644U);
  // Both keys reached the writer (the log says what it was given).
  EXPECT_NE(
      ReadAll(daemon_->log_path()).find("metrics: writing " + target_.string() + " every 1 s"),
      std::string::npos)
      << ReadAll(daemon_->log_path());
  // It is rewritten: a map made now shows up in a later version of the file.
  json c = Call("container.create", {{"devices", {kEdu}}})->result;
  ASSERT_TRUE(Call("dma.alloc", {{"container", c["container"]}, {"size", 65536}, {"backing", "4k"}})
                  .has_value());
  auto later =
      WaitForFile([](const PromText& m) { return m.Value("vfiod_map_bytes_total") == 65536; });
  ASSERT_TRUE(later.has_value()) << later.error();
  EXPECT_EQ(later->Value("vfiod_map_bytes_total"), 65536);
  EXPECT_EQ(later->Value("vfiod_mappings"), 1);
  // Only the target in the directory (no temp file left behind) ...
  std::vector<std::string> entries;
  for (const auto& e : fs::directory_iterator(target_.parent_path())) {
    entries.push_back(e.path().filename().string());
  }
  EXPECT_EQ(entries, std::vector<std::string>{"vfiod.prom"});
  // ... and nothing once the daemon stopped.
  client_.reset();
  EXPECT_EQ(daemon_->Stop(), 0);
  EXPECT_FALSE(fs::exists(target_));
}

class MissingDirectoryTest : public TextfileDaemonTest {
  std::string SubDir() const override { return "later"; }
};

TEST_F(MissingDirectoryTest, AMissingDirectoryDoesNotStopTheDaemon) {
  ASSERT_TRUE(Call("ping").has_value());
  for (int i = 0;
       i < 600 && ReadAll(daemon_->log_path()).find("metrics textfile") == std::string::npos; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_NE(ReadAll(daemon_->log_path()).find("No such file or directory"), std::string::npos);
  ASSERT_TRUE(Call("ping").has_value());
  fs::create_directory(dir_ / "later");
  auto written = WaitForFile([](const PromText&) { return true; });
  ASSERT_TRUE(written.has_value()) << written.error();
}

// On the real kernel (in the test VM): the text parses and the per-container
// IOMMU figures agree with container.info after real maps and a free.
TEST(VmMetricsTest, RealKernelFiguresParseAndAgree) {
  const char* bdf = std::getenv("VFIOD_EDU_BDF");
  if (!InVm() || bdf == nullptr) {
    GTEST_SKIP() << "runs inside the test VM (tests/vm/vm_run.sh), VFIOD_EDU_BDF unset";
  }
  Daemon daemon(Daemon::DefaultPolicy(), "1G");
  client::Client root = daemon.Connect();
  auto c = root.Call("container.create", {{"devices", {bdf}}, {"name", "metrics"}});
  ASSERT_CALL_OK(c);
  const uint64_t id = c->result["container"].get<uint64_t>();
  std::vector<uint64_t> maps;
  for (uint64_t size : {2 << 20, 64 << 10, 4 << 10}) {
    auto m = root.Call(
        "dma.alloc", {{"container", id}, {"size", size}, {"backing", "4k"}, {"dma_mask_bits", 28}});
    ASSERT_CALL_OK(m);
    maps.push_back(m->result["mapping"].get<uint64_t>());
  }
  ASSERT_CALL_OK(root.Call("dma.free", {{"mapping", maps[1]}}));
  auto info = root.Call("container.info", {{"container", id}});
  ASSERT_CALL_OK(info);
  auto stats = root.Call("stats");
  ASSERT_CALL_OK(stats);
  auto scraped = Scrape(root);
  ASSERT_TRUE(scraped.has_value()) << scraped.error();
  const PromLabels labels = {
      {"container", std::to_string(id)}, {"name", "metrics"}, {"owner_uid", "0"}};
  EXPECT_EQ(scraped->Value("vfiod_container_dma_entries_available", labels),
            info->result["dma_avail"].get<double>());
  EXPECT_EQ(scraped->Value("vfiod_container_dma_entries", labels),
            info->result["dma_entries_used"].get<double>());
  EXPECT_GT(info->result["dma_entries_used"].get<double>(), 0);
  EXPECT_EQ(scraped->Value("vfiod_container_mappings", labels), 2);
  EXPECT_EQ(scraped->Value("vfiod_map_duration_seconds_count"), 3);
  EXPECT_EQ(scraped->Value("vfiod_unmap_duration_seconds_count"), 1);
  EXPECT_EQ(scraped->Value("vfiod_map_ioctls_total"), stats->result["map"]["ioctls"].get<double>());
  EXPECT_EQ(scraped->Value("vfiod_info",
                           {{"version", "0.1.0"}, {"api_version", "1"}, {"kernel", "linux"}}),
            1);
  ASSERT_CALL_OK(root.Call("container.destroy", {{"container", id}}));
  EXPECT_EQ(daemon.Stop(), 0);
}

}  // namespace
}  // namespace vfiod::itest
