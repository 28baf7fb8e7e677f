// The transport's limits on the real vfiod binary: batch length, strict JSON
// text, the batch reply budget, back-pressure for a client that never reads,
// the per-user share of connections and root's reserve, the idle, line and
// write timeouts, and the daemon's peak memory under all of these at once.
// Each test runs on the model kernel on the host, and on the real kernel in
// the VM (VFIOD_IN_VM=1): none needs a device.
#include <gtest/gtest.h>
#include <poll.h>

#include <thread>

#include "as_user.h"
#include "daemon_harness.h"
#include "proto/errors.h"
#include "proto/jsonrpc.h"
#include "raw_conn.h"

namespace vfiod::itest {
namespace {

using namespace std::chrono_literals;

constexpr uid_t kOther = 65533;  // a second unprivileged uid (no passwd entry needed)

json Policy() {
  return {{"rules", json::array({{{"users", json::array({kNobody, kOther})},
                                  {"devices", json::array({kEdu})}}})}};
}

std::string Req(const std::string& method, int id) {
  return wire::ToLine(wire::MakeRequest(method, nullptr, id));
}

std::string BatchOf(const std::string& method, std::size_t n) {
  std::string line = "[";
  for (std::size_t i = 0; i < n; ++i) {
    line += (i == 0 ? "" : ",") + wire::MakeRequest(method, nullptr, i).dump();
  }
  return line + "]\n";
}

int CodeOf(const json& reply) {
  return reply.is_object() && reply.contains("error") ? reply["error"].value("code", 0) : 0;
}

std::string LimitOf(const json& reply) {
  return CodeOf(reply) != 0 ? reply["error"].value("data", json::object()).value("limit", "") : "";
}

/// A ping from `uid` on a fresh connection: "" when answered, else why not.
std::string PingAs(const std::string& socket, uid_t uid) {
  return RunAs(uid, uid, [&]() -> std::string {
    RawConn c(socket);
    c.Write(Req("ping", 1));
    json reply = c.ReadJson();
    return reply.is_object() && reply.contains("result")
               ? ""
               : "uid " + std::to_string(uid) + ": " + reply.dump();
  });
}

TEST(LimitsTest, ABatchOverMaxBatchIsRefusedWholeAndNothingRuns) {
  Daemon daemon(Policy());
  RawConn c(daemon.socket());
  for (std::size_t n : {257u, 5000u}) {
    // container.create first: were anything of the batch run, a container would exist.
    std::string batch = BatchOf("ping", n);
    batch.replace(1, 0,
                  wire::MakeRequest("container.create", {{"devices", {kEdu}}}, 99).dump() + ",");
    ASSERT_TRUE(c.Write(batch));
    json reply = c.ReadJson();
    ASSERT_TRUE(reply.is_object()) << reply.dump().substr(0, 300);
    EXPECT_EQ(CodeOf(reply), wire::kInvalidRequest) << reply;
    EXPECT_TRUE(reply["id"].is_null());
  }
  c.Write(Req("container.list", 1));
  json list = c.ReadJson();
  ASSERT_TRUE(list.contains("result")) << list;
  EXPECT_EQ(list["result"].size(), 0u) << list;
  c.Write(BatchOf("ping", 256));
  json replies = c.ReadJson();
  ASSERT_TRUE(replies.is_array());
  EXPECT_EQ(replies.size(), 256u);
}

TEST(LimitsTest, ANulByteOrTrailingTextIsAParseError) {
  Daemon daemon(Policy());
  RawConn c(daemon.socket());
  std::string ping = R"({"jsonrpc":"2.0","id":1,"method":"ping"})";
  for (const std::string& bad :
       {ping + std::string(1, '\0'), ping + std::string(1, '\0') + "x", ping + " 1", ping + "}"}) {
    ASSERT_TRUE(c.Write(bad + "\n"));
    json reply = c.ReadJson();
    EXPECT_EQ(CodeOf(reply), wire::kParseError) << reply;
    EXPECT_TRUE(reply["id"].is_null());
  }
  c.Write(ping + "\n");
  EXPECT_TRUE(c.ReadJson().contains("result"));
}

TEST(LimitsTest, ABatchOfDiscoverIsCutAtTheReplyBudget) {
  Daemon daemon(Policy(), "2M", Launch::kDirect, {{"max_batch_reply_bytes", "256K"}});
  RawConn c(daemon.socket());
  c.Write(BatchOf("rpc.discover", 256));
  std::string line = c.ReadLine();
  json replies = json::parse(line, nullptr, false);
  ASSERT_TRUE(replies.is_array()) << line.substr(0, 300);
  ASSERT_EQ(replies.size(), 256u);
  std::size_t answered = 0;
  for (std::size_t i = 0; i < replies.size(); ++i) {
    EXPECT_EQ(replies[i]["id"], i);
    if (replies[i].contains("result")) {
      EXPECT_EQ(answered, i) << "an answer after a cut element";
      ++answered;
    } else {
      EXPECT_EQ(LimitOf(replies[i]), "max_batch_reply_bytes") << replies[i];
    }
  }
  // The budget counts each reply's bytes and its separator, envelope
  // included: the answered ones reach it, all but the last stay below.
  const std::size_t doc = replies[0]["result"].dump().size();
  std::size_t counted = 0;
  for (std::size_t i = 0; i < answered; ++i) {
    counted += replies[i].dump().size() + 1;
  }
  EXPECT_GE(counted, 256u << 10);
  EXPECT_LT(counted - (replies[answered - 1].dump().size() + 1), 256u << 10);
  EXPECT_LT(line.size(), (256u << 10) + doc + 256 * 200) << "over the budget plus one reply";
}

TEST(LimitsTest, AClientThatNeverReadsIsNotReadEither) {
  Daemon daemon(Policy(), "2M", Launch::kDirect, {{"max_output_bytes", "1M"}});
  RawConn hog(daemon.socket());
  // 64 KiB of rpc.discover lines: ~1,300 replies of ~24 KB (30 MB) if all were answered.
  std::string lines;
  while (lines.size() < (64u << 10)) {
    lines += Req("rpc.discover", static_cast<int>(lines.size()));
  }
  std::size_t sent = 0;
  for (int round = 0; round < 8; ++round) {
    sent += hog.WriteSome(lines, 500ms);
  }
  // The daemon stopped reading: most of what the hog wrote is still unsent.
  EXPECT_LT(sent, 8 * lines.size());
  // Everyone else is served meanwhile.
  RawConn other(daemon.socket());
  other.Write(Req("ping", 1));
  EXPECT_TRUE(other.ReadJson().contains("result"));
  std::size_t peak = PeakRssKiB(daemon.pid());
  std::printf("daemon VmHWM with a 1M output limit and a hog: %zu KiB\n", peak);
  EXPECT_LT(peak, MemoryBoundKiB(64u << 10));
}

TEST(LimitsTest, AClientThatNeverReadsIsClosedAfterTheWriteTimeout) {
  Daemon daemon(Policy(), "2M", Launch::kDirect,
                {{"max_output_bytes", "1M"}, {"write_timeout", 1}});
  RawConn observer(daemon.socket());
  auto clients = [&] {
    observer.Write(Req("status", 1));
    return observer.ReadJson().value("result", json::object()).value("clients", -1);
  };
  const int baseline = clients();
  RawConn hog(daemon.socket());
  std::string lines;
  while (lines.size() < (64u << 10)) {
    lines += Req("rpc.discover", static_cast<int>(lines.size()));
  }
  (void)hog.WriteSome(lines, 500ms);
  // Closed without reading a byte: POLLRDHUP shows while replies sit unread.
  pollfd p{hog.fd(), POLLRDHUP, 0};
  ASSERT_EQ(::poll(&p, 1, 15'000), 1) << "the hog is still open";
  EXPECT_NE(p.revents & POLLRDHUP, 0);
  for (int i = 0; i < 100 && clients() != baseline; ++i) {
    std::this_thread::sleep_for(50ms);
  }
  EXPECT_EQ(clients(), baseline) << "the hog's connection is still counted";
}

TEST(LimitsTest, OneUserCannotLockOthersOrRootOut) {
  Daemon daemon(Policy());
  HeldConnections hog(daemon.socket(), kNobody, 200);
  ASSERT_TRUE(hog.report().is_object()) << hog.report();
  EXPECT_EQ(hog.report()["accepted"], 16) << hog.report();
  EXPECT_EQ(hog.report()["refused"], 184) << hog.report();
  EXPECT_EQ(hog.report()["limits"], json::array({"max_clients_per_user"})) << hog.report();
  EXPECT_EQ(PingAs(daemon.socket(), kOther), "");
  EXPECT_EQ(PingAs(daemon.socket(), 0), "");
}

// A user whose every request is refused cannot flood the log: each refusal
// is a policy_refused warning, but the user's lines stop at its budget
// (logging.user_burst at once, user_lines_per_second after), the cut is
// counted and reported, and another user's refusal is still logged.
TEST(LimitsTest, OneUsersRefusalsAreLoggedWithinItsBudget) {
  constexpr int kRequests = 500;
  constexpr int kBurst = 20;
  Daemon daemon(
      Policy(), "2M", Launch::kDirect, json::object(),
      {{"logging", {{"level", "info"}, {"user_lines_per_second", 1}, {"user_burst", kBurst}}}});
  const auto started = std::chrono::steady_clock::now();
  const std::string flood = RunAs(kNobody, kNobody, [&]() -> std::string {
    RawConn c(daemon.socket());
    for (int i = 0; i < kRequests; i += 20) {  // within max_inflight_per_client
      std::string lines;
      for (int j = i; j < i + 20; ++j) {
        lines += wire::ToLine(wire::MakeRequest("device.unbind", {{"bdf", kEdu}}, j));
      }
      c.Write(lines);
      for (int j = i; j < i + 20; ++j) {
        if (json reply = c.ReadJson(); CodeOf(reply) != wire::kPermissionDenied) {
          return "reply " + std::to_string(j) + ": " + reply.dump();
        }
      }
    }
    return "";
  });
  EXPECT_EQ(flood, "");
  const std::string other = RunAs(kOther, kOther, [&]() -> std::string {
    RawConn c(daemon.socket());
    c.Write(wire::ToLine(wire::MakeRequest("device.unbind", {{"bdf", kEdu}}, 1)));
    return std::to_string(CodeOf(c.ReadJson()));
  });
  EXPECT_EQ(other, std::to_string(wire::kPermissionDenied));
  ASSERT_EQ(daemon.Stop(), 0);
  // A token a second came back while the test ran (however slow the host).
  const auto refilled = static_cast<size_t>(
      std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() - started)
          .count() +
      1);
  const std::string log = ReadAll(daemon.log_path());
  auto count = [&](const std::string& what) {
    size_t n = 0;
    for (size_t at = log.find(what); at != std::string::npos; at = log.find(what, at + 1)) {
      ++n;
    }
    return n;
  };
  const size_t logged = count("device.unbind from uid " + std::to_string(kNobody));
  // The burst (less the connection's own event), plus what came back.
  EXPECT_GE(logged, 1U) << log;
  EXPECT_LE(logged, kBurst + refilled) << log;
  EXPECT_EQ(count("device.unbind from uid " + std::to_string(kOther)), 1U) << log;
  // Nothing is cut silently: every cut is in a count ("uid 65534: N log lines
  // not written", with a later line of the user or at the stop), and the
  // refusals logged plus the counts are the refusals made, plus at most the
  // connection's closing line.
  const std::string cut_line = "uid " + std::to_string(kNobody) + ": ";
  size_t reports = 0;
  size_t cut = 0;
  for (size_t at = log.find(cut_line); at != std::string::npos; at = log.find(cut_line, at + 1)) {
    const size_t number = at + cut_line.size();
    if (log.compare(log.find(' ', number), 22, " log lines not written") == 0) {
      ++reports;
      cut += std::stoul(log.substr(number));
    }
  }
  EXPECT_GE(reports, 1U) << log;
  EXPECT_GE(logged + cut, static_cast<size_t>(kRequests)) << log;
  EXPECT_LE(logged + cut, static_cast<size_t>(kRequests) + 1) << log;
}

TEST(LimitsTest, RootHasAReserveWhenOthersFillMaxClients) {
  Daemon daemon(Policy(), "2M", Launch::kDirect, {{"max_clients", 6}, {"max_clients_per_user", 3}});
  HeldConnections a(daemon.socket(), kNobody, 3);
  HeldConnections b(daemon.socket(), kOther, 5);
  EXPECT_EQ(a.report()["accepted"], 3) << a.report();
  EXPECT_EQ(b.report()["accepted"], 3) << b.report();
  EXPECT_EQ(b.report()["limits"], json::array({"max_clients_per_user"})) << b.report();
  // 6 of 6 used: a third user is refused by the total, root is not.
  HeldConnections c(daemon.socket(), 65532, 1);
  EXPECT_EQ(c.report()["refused"], 1) << c.report();
  EXPECT_EQ(c.report()["limits"], json::array({"max_clients"})) << c.report();
  EXPECT_EQ(PingAs(daemon.socket(), 0), "");
}

TEST(LimitsTest, AnIdleConnectionIsClosedAfterOneErrorLine) {
  Daemon daemon(Policy(), "2M", Launch::kDirect, {{"idle_timeout", 1}});
  RawConn c(daemon.socket());
  c.Write(Req("ping", 1));
  EXPECT_TRUE(c.ReadJson().contains("result"));
  json bye = c.ReadJson();
  EXPECT_EQ(CodeOf(bye), wire::kBusy) << bye;
  EXPECT_EQ(LimitOf(bye), "idle_timeout");
  EXPECT_EQ(c.ReadLine(), "<eof>");
}

TEST(LimitsTest, AnIncompleteLineIsClosedAfterTheLineTimeout) {
  Daemon daemon(Policy(), "2M", Launch::kDirect, {{"line_timeout", 1}});
  RawConn c(daemon.socket());
  c.Write(R"({"jsonrpc":"2.0","id":1,)");
  json bye = c.ReadJson();
  EXPECT_EQ(CodeOf(bye), wire::kBusy) << bye;
  EXPECT_EQ(LimitOf(bye), "line_timeout");
  EXPECT_EQ(c.ReadLine(), "<eof>");
}

}  // namespace
}  // namespace vfiod::itest
