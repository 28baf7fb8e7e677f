// The real vfiod (model kernel) times the DMA paths stage by stage: `stats`
// gives every method its stages_us with the stable stage names, the
// handler's own stages add up to its total_us (to rounding, whatever the
// durations are), totals only grow, and the metrics' stage counter agrees
// with `stats`. Structure and counts only: no durations are asserted.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/memfd.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <set>
#include <string>

#include "model_daemon_fixture.h"
#include "support/prom_parser.h"

namespace vfiod::itest {
namespace {

const std::set<std::string> kHandlerStages = {"params", "lookup", "lock_wait",   "prepare",
                                              "plan",   "ioctl",  "bookkeeping", "record",
                                              "result", "other"};
const std::set<std::string> kOuterStages = {"parse", "queue", "reply"};
const char* const kDmaMethods[] = {"dma.alloc", "dma.map_fd", "dma.map_bar", "dma.free"};

class StagesTest : public ModelDaemonTest {
 protected:
  json Must(const std::string& method, const json& params = json::object(),
            std::span<const int> fds = {}) {
    auto r = Call(method, params, fds);
    EXPECT_TRUE(r.has_value()) << method << ": " << (r ? "" : r.error().Describe());
    return r ? r->result : json();
  }
  /// One pair of each DMA method: alloc, map_fd of a memfd, map_bar; each freed.
  void MapAndFreeEach(uint64_t container) {
    json a = Must("dma.alloc", {{"container", container}, {"size", 65536}, {"backing", "4k"}});
    UniqueFd memfd(
        static_cast<int>(::syscall(SYS_memfd_create, "stages", MFD_CLOEXEC | MFD_ALLOW_SEALING)));
    ASSERT_TRUE(memfd.valid());
    ASSERT_EQ(::ftruncate(memfd.get(), 2 << 20), 0);
    ASSERT_EQ(::fcntl(memfd.get(), F_ADD_SEALS, F_SEAL_SHRINK), 0);
    const int fds[] = {memfd.get()};
    json f =
        Must("dma.map_fd", {{"container", container}, {"fd", {{"fd", 0}}}, {"size", 2 << 20}}, fds);
    json b = Must("dma.map_bar", {{"container", container}, {"bdf", kIvshmem}, {"bar", 2}});
    for (const json* m : {&a, &f, &b}) {
      Must("dma.free", {{"mapping", (*m)["mapping"]}});
    }
  }
};

TEST_F(StagesTest, EveryDmaCallHasItsStagesAndTheyAddUpToTheHandlerTime) {
  json c = Must("container.create", {{"devices", {kEdu, kIvshmem}}});
  const uint64_t container = c.value("container", uint64_t{0});
  MapAndFreeEach(container);
  const json first = Must("stats");
  MapAndFreeEach(container);
  const json second = Must("stats");

  for (const char* method : kDmaMethods) {
    SCOPED_TRACE(method);
    const json& was = first["by_method"][method];
    const json& now = second["by_method"][method];
    ASSERT_TRUE(now.contains("stages_us")) << now.dump();
    const json& stages = now["stages_us"];
    std::set<std::string> names;
    uint64_t handler_us = 0;
    for (const auto& [name, us] : stages.items()) {
      names.insert(name);
      ASSERT_TRUE(us.is_number_unsigned()) << name;
      if (kHandlerStages.contains(name)) {
        handler_us += us.get<uint64_t>();
      }
      // Totals only grow.
      EXPECT_GE(us.get<uint64_t>(), was["stages_us"][name].get<uint64_t>()) << name;
    }
    std::set<std::string> all = kHandlerStages;
    all.insert(kOuterStages.begin(), kOuterStages.end());
    EXPECT_EQ(names, all);
    // Both are sums of nanoseconds floored to microseconds (per stage, and
    // per call): they differ by at most one microsecond per term.
    const uint64_t calls = now["calls"].get<uint64_t>();
    EXPECT_EQ(calls, was["calls"].get<uint64_t>() + (std::string(method) == "dma.free" ? 3 : 1));
    const uint64_t total_us = now["total_us"].get<uint64_t>();
    const uint64_t slack = calls + all.size();
    EXPECT_LE(handler_us, total_us + slack);
    EXPECT_GE(handler_us + slack, total_us);
  }
  // A method off the DMA paths has the same stable names.
  ASSERT_TRUE(second["by_method"]["container.create"].contains("stages_us"));
  EXPECT_EQ(second["by_method"]["container.create"]["stages_us"].size(),
            kHandlerStages.size() + kOuterStages.size());
}

TEST_F(StagesTest, TheMetricsStageCounterAgreesWithStats) {
  json c = Must("container.create", {{"devices", {kEdu, kIvshmem}}});
  MapAndFreeEach(c.value("container", uint64_t{0}));
  const json stats = Must("stats");
  auto r = Call("metrics");
  ASSERT_TRUE(r.has_value());
  // get_ref, not value(): GCC 12 sees a null dereference in value()'s
  // string conversion once inlined here (a false positive).
  const auto text = r->result.find("text");
  ASSERT_TRUE(text != r->result.end() && text->is_string());
  auto parsed = promtest::ParsePrometheusText(text->get_ref<const std::string&>());
  ASSERT_TRUE(parsed.has_value()) << parsed.error();
  for (const char* method : kDmaMethods) {
    SCOPED_TRACE(method);
    for (const auto& [stage, us] : stats["by_method"][method]["stages_us"].items()) {
      // The text has the nanosecond total, stats floors it to microseconds;
      // a stage never entered has no sample.
      const double seconds =
          parsed->Value("vfiod_request_stage_seconds_total", {{"method", method}, {"stage", stage}})
              .value_or(0);
      EXPECT_NEAR(seconds, us.get<double>() / 1e6, 1.001e-6) << stage;
    }
  }
}

}  // namespace
}  // namespace vfiod::itest
