// The bad-input catalogue (tests/badinput/CATALOGUE.md) sent row by row to the
// real vfiod binary on the model kernel. The table is the test's input: every
// row is one test case. After each row: the expected replies and detail, the
// row's own session figures unmoved, then (once the row's connection is gone)
// the daemon's status figures and open fd count back to the baseline, and a
// ping from another client answered.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <optional>
#include <set>
#include <thread>

#include "as_user.h"
#include "daemon_harness.h"
#include "row_runner.h"

namespace vfiod::itest {
namespace {

const std::string kCatalogue = std::string(VFIOD_BADINPUT_DIR) + "/CATALOGUE.md";
constexpr int kMaxRegions = 3;

size_t OpenFds(pid_t pid) {
  std::error_code ec;
  auto it = std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/fd", ec);
  return ec ? 0 : static_cast<size_t>(std::distance(it, std::filesystem::directory_iterator()));
}

/// One daemon the rows run against, its observer (re-connected when the
/// daemon closed it: the strict daemon's idle timeout does), the figures and
/// open fd count every row must leave it with, and the vars its rows may use.
struct Target {
  Daemon* daemon = nullptr;
  std::optional<client::Client> observer;
  json baseline;
  size_t baseline_fds = 0;
  std::map<std::string, std::string> vars;

  json Figures() {
    for (int attempt = 0; attempt < 2; ++attempt) {
      if (!observer) {
        observer.emplace(daemon->Connect());
      }
      auto s = observer->Call("status");
      if (s) {
        return {{"clients", s->result["clients"]},
                {"containers", s->result["containers"]},
                {"mappings", s->result["mappings"]},
                {"locked_bytes", s->result["locked_bytes"]},
                {"dma_entries", s->result["dma_entries"]}};
      }
      observer.reset();
    }
    return json("status failed twice");
  }
  void TakeBaseline() {
    baseline = Figures();
    baseline_fds = OpenFds(daemon->pid());
  }
  // A daemon started as systemd does sends its fd store notifications to a
  // datagram socket with a short queue (net.unix.max_dgram_qlen): they are
  // read as they come (their fds dropped), or vfiod would wait on a full queue.
  std::thread drain;
  std::atomic<bool> draining = false;
  void StartDraining() {
    draining = true;
    drain = std::thread([this] {
      while (draining) {
        (void)daemon->Notifications();
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
      }
    });
  }
  void StopDraining() {
    draining = false;
    if (drain.joinable()) {
      drain.join();
    }
  }
};

// The strict daemon's limits: short timeouts for the rows that wait one out,
// a share of 4 connections per user, a 1 MiB cap on bytes pinned for all.
constexpr int kStrictShare = 4;
json StrictLimits() {
  return {{"idle_timeout", 3},          {"line_timeout", 2},
          {"write_timeout", 2},         {"max_clients_per_user", kStrictShare},
          {"max_output_bytes", "1M"},   {"max_locked_bytes", "1M"},
          {"max_regions", kMaxRegions}, {"max_frame_bytes", 131072}};
}

// The store daemon's fd store budget: one container over edu (4 fds: its fd,
// its own record, its group's fd, edu's device fd) and nothing more.
constexpr int kStoreBudget = 5;
// One non-root user's share of it: less than a container's 4 fds.
constexpr int kStoreUserShare = 3;

bool HasStep(const CatalogueRow& row, const std::string& step) {
  auto steps = SetupSteps(row.setup);
  return std::find(steps.begin(), steps.end(), step) != steps.end();
}

class BadInputTest : public ::testing::TestWithParam<CatalogueRow> {
 protected:
  static void SetUpTestSuite() {
    if (InVm()) {
      return;
    }
    main_.daemon = new Daemon(Daemon::DefaultPolicy(), "2M", Launch::kDirect,
                              json{{"max_regions", kMaxRegions}, {"max_frame_bytes", 131072}});
    // Objects of another session, held for the whole suite: the rows may name
    // them ("$foreign_container", "$foreign_mapping", "$foreign_region").
    owner_ = new client::Client(main_.daemon->Connect());
    // Its container holds the NIC (bound to vfio-pci here), so the rows keep
    // edu and ivshmem for themselves.
    Fixture fx;
    auto bound = owner_->Call("device.bind", {{"bdf", kUnbound}});
    std::string failed = bound ? "" : "bind: " + bound.error().Describe();
    if (failed.empty()) {
      failed = MakeContainer(*owner_, fx, {{"devices", {kUnbound}}, {"name", "foreign"}});
    }
    for (const char* step : {"mapping", "region"}) {
      if (failed.empty()) {
        failed = Steps().at(step)(*owner_, fx);
      }
    }
    if (!failed.empty()) {
      (void)std::fprintf(stderr, "foreign fixture: %s\n", failed.c_str());
      std::abort();
    }
    for (const auto& [k, v] : fx.vars) {
      main_.vars["foreign_" + k] = v;
    }
    main_.TakeBaseline();
    strict_.daemon = new Daemon(Daemon::DefaultPolicy(), "2M", Launch::kDirect, StrictLimits());
    strict_.vars["share"] = std::to_string(kStrictShare);
    strict_.TakeBaseline();
  }
  static void TearDownTestSuite() {
    delete owner_;
    for (Target* t : {&main_, &strict_, &store_}) {
      t->observer.reset();
      if (t->daemon != nullptr) {
        EXPECT_EQ(t->daemon->Stop(), 0) << ReadAll(t->daemon->log_path());
      }
      t->StopDraining();  // after the stop: a handover notifies on the way out
      delete t->daemon;
      t->daemon = nullptr;
    }
  }
  void SetUp() override {
    if (InVm()) {
      GTEST_SKIP() << "model-kernel scenario";
    }
  }

  static Target main_;    // the suite's daemon, with the foreign objects
  static Target strict_;  // the daemon of rows with the "strict" step
  static Target store_;   // the daemon of rows with the "store" step; started by the first
  static client::Client* owner_;
};

Target BadInputTest::main_;
Target BadInputTest::strict_;
Target BadInputTest::store_;
client::Client* BadInputTest::owner_ = nullptr;

RowOutcome RunRowAs(const std::string& socket, const CatalogueRow& row,
                    const std::map<std::string, std::string>& vars) {
  if (!HasStep(row, "nobody")) {
    return RunRow(socket, row, vars);
  }
  std::string report = RunAs(kNobody, kNobody, [&] {
    RowOutcome o = RunRow(socket, row, vars);
    return json{{"reply", o.reply}, {"detail", o.detail}, {"problems", o.problems}}.dump();
  });
  json j = json::parse(report, nullptr, false);
  if (!j.is_object()) {
    return {"", "", "as uid 65534: " + report};
  }
  return {j["reply"], j["detail"], j["problems"]};
}

TEST_P(BadInputTest, Row) {
  const CatalogueRow& row = GetParam();
  SCOPED_TRACE("CATALOGUE.md line " + std::to_string(row.line) + ": " + row.id + " " + row.checks);
  if (HasStep(row, "store") && store_.daemon == nullptr) {
    store_.daemon = new Daemon(
        Daemon::DefaultPolicy(), "2M", Launch::kSystemdLike,
        json{{"max_stored_fds", kStoreBudget}, {"max_stored_fds_per_user", kStoreUserShare}});
    store_.StartDraining();
    store_.TakeBaseline();
  }
  Target& target = HasStep(row, "strict") ? strict_ : HasStep(row, "store") ? store_ : main_;
  RowOutcome got = RunRowAs(target.daemon->socket(), row, target.vars);
  EXPECT_EQ(got.problems, "");
  EXPECT_EQ(got.reply, row.reply) << "detail: " << got.detail;
  if (!row.detail.empty()) {
    EXPECT_NE(got.detail.find(row.detail), std::string::npos) << got.detail;
  }
  // The row's connection is closed; its close hooks run asynchronously, so the
  // figures are awaited (bounded), then compared.
  json now;
  size_t fds = 0;
  for (int i = 0; i < 500; ++i) {
    now = target.Figures();
    fds = OpenFds(target.daemon->pid());
    if (now == target.baseline && fds == target.baseline_fds) {
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(now, target.baseline) << "status figures did not come back";
  EXPECT_EQ(fds, target.baseline_fds) << "the daemon's open fds did not come back";
  auto other = client::Client::Connect(target.daemon->socket());
  ASSERT_TRUE(other.has_value());
  EXPECT_TRUE(other->Call("ping").has_value()) << "a second client's ping was not answered";
}

// VFIOD_BADINPUT_TABLE names another table to run instead (rows being
// written, tried before they join the catalogue).
std::vector<CatalogueRow> Rows() {
  const char* other = std::getenv("VFIOD_BADINPUT_TABLE");
  return ReadCatalogue(other != nullptr ? other : kCatalogue);
}

INSTANTIATE_TEST_SUITE_P(Catalogue, BadInputTest, ::testing::ValuesIn(Rows()),
                         [](const ::testing::TestParamInfo<CatalogueRow>& param_info) {
                           return param_info.param.id.empty()
                                      ? "line" + std::to_string(param_info.param.line)
                                      : param_info.param.id;
                         });

// The tables themselves: well-formed rows, unique ids, known setup steps and
// categories, a reply in the catalogue's notation, and at least 100 run rows.
void CheckTable(const std::vector<CatalogueRow>& rows, std::set<std::string>& ids) {
  static const std::set<std::string> kCategories = {
      "wire", "envelope", "types", "ranges", "fds", "seals", "policy", "sequencing", "exhaustion"};
  for (const auto& row : rows) {
    SCOPED_TRACE("line " + std::to_string(row.line) + " " + row.id);
    ASSERT_FALSE(row.id.empty()) << "a table line without exactly eight cells";
    EXPECT_TRUE(ids.insert(row.id).second) << "duplicate id";
    EXPECT_TRUE(kCategories.contains(row.category)) << row.category;
    for (const std::string& step : SetupSteps(row.setup)) {
      EXPECT_TRUE(Steps().contains(step)) << "unknown setup step " << step;
    }
    EXPECT_FALSE(row.method.empty());
    EXPECT_FALSE(row.reply.empty());
    EXPECT_FALSE(row.checks.empty());
    Fixture fx;
    EXPECT_TRUE(RowBytes(row, fx).has_value()) << "input: " << row.input;
  }
}

TEST(BadInputCatalogue, TablesAreWellFormed) {
  std::set<std::string> ids;
  auto rows = ReadCatalogue(kCatalogue);
  CheckTable(rows, ids);
  EXPECT_GE(rows.size(), 100u);
}

}  // namespace
}  // namespace vfiod::itest
