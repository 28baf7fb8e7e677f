// The bad-input catalogue (tests/badinput/CATALOGUE.md) sent row by row to the
// real vfiod binary on the model kernel. The table is the test's input: every
// row is one test case. After each row: the expected replies and detail, the
// row's own session figures unmoved, then (once the row's connection is gone)
// the daemon's status figures and open fd count back to the baseline, and a
// ping from another client answered.
#include <gtest/gtest.h>

#include <filesystem>
#include <set>
#include <thread>

#include "as_user.h"
#include "daemon_harness.h"
#include "row_runner.h"

namespace vfiod::itest {
namespace {

const std::string kCatalogue = std::string(VFIOD_BADINPUT_DIR) + "/CATALOGUE.md";
const std::string kPending = std::string(VFIOD_BADINPUT_DIR) + "/PENDING.md";
constexpr int kMaxRegions = 3;

size_t OpenFds(pid_t pid) {
  std::error_code ec;
  auto it = std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/fd", ec);
  return ec ? 0 : static_cast<size_t>(std::distance(it, std::filesystem::directory_iterator()));
}

class BadInputTest : public ::testing::TestWithParam<CatalogueRow> {
 protected:
  static void SetUpTestSuite() {
    if (InVm()) {
      return;
    }
    daemon_ = new Daemon(Daemon::DefaultPolicy(), "2M", Launch::kDirect,
                         json{{"max_regions", kMaxRegions}, {"max_frame_bytes", 131072}});
    observer_ = new client::Client(daemon_->Connect());
    // Objects of another session, held for the whole suite: the rows may name
    // them ("$foreign_container", "$foreign_mapping", "$foreign_region").
    owner_ = new client::Client(daemon_->Connect());
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
      foreign_["foreign_" + k] = v;
    }
    baseline_ = Figures();
    baseline_fds_ = OpenFds(daemon_->pid());
  }
  static void TearDownTestSuite() {
    delete owner_;
    delete observer_;
    if (daemon_ != nullptr) {
      EXPECT_EQ(daemon_->Stop(), 0) << ReadAll(daemon_->log_path());
    }
    delete daemon_;
    daemon_ = nullptr;
  }
  void SetUp() override {
    if (InVm()) {
      GTEST_SKIP() << "model-kernel scenario";
    }
  }

  static json Figures() {
    auto s = observer_->Call("status");
    if (!s) {
      return json("status failed: " + s.error().Describe());
    }
    return {{"clients", s->result["clients"]},
            {"containers", s->result["containers"]},
            {"mappings", s->result["mappings"]},
            {"locked_bytes", s->result["locked_bytes"]},
            {"dma_entries", s->result["dma_entries"]}};
  }

  static Daemon* daemon_;
  static client::Client* observer_;
  static client::Client* owner_;
  static std::map<std::string, std::string> foreign_;
  static json baseline_;
  static size_t baseline_fds_;
};

Daemon* BadInputTest::daemon_ = nullptr;
client::Client* BadInputTest::observer_ = nullptr;
client::Client* BadInputTest::owner_ = nullptr;
std::map<std::string, std::string> BadInputTest::foreign_;
json BadInputTest::baseline_;
size_t BadInputTest::baseline_fds_ = 0;

RowOutcome RunRowAs(const std::string& socket, const CatalogueRow& row,
                    const std::map<std::string, std::string>& vars) {
  if (!row.setup.starts_with("nobody")) {
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
  RowOutcome got = RunRowAs(daemon_->socket(), row, foreign_);
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
    now = Figures();
    fds = OpenFds(daemon_->pid());
    if (now == baseline_ && fds == baseline_fds_) {
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(now, baseline_) << "status figures did not come back";
  EXPECT_EQ(fds, baseline_fds_) << "the daemon's open fds did not come back";
  auto other = client::Client::Connect(daemon_->socket());
  ASSERT_TRUE(other.has_value());
  EXPECT_TRUE(other->Call("ping").has_value()) << "a second client's ping was not answered";
}

// VFIOD_BADINPUT_TABLE names another table to run instead (PENDING.md, to try
// its rows against a daemon that has the changes they wait for).
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
// PENDING.md (rows awaiting other changes, not run) is held to the same form.
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
  auto pending = ReadCatalogue(kPending);
  EXPECT_FALSE(pending.empty());
  CheckTable(pending, ids);
}

}  // namespace
}  // namespace vfiod::itest
