// The daemon's peak memory under the transport attacks at once: 1 MiB lines
// holding batches of rpc.discover from several connections, batches whose
// replies are cut at the budget, clients that never read, and 200 idle
// connections of one uid. The bound asserted (128 MiB of VmHWM) is a memory
// bound, not a timing one; the figure observed is printed.
#include <gtest/gtest.h>

#include <thread>

#include "as_user.h"
#include "daemon_harness.h"
#include "proto/jsonrpc.h"
#include "raw_conn.h"

namespace vfiod::itest {
namespace {

using namespace std::chrono_literals;

constexpr std::size_t kBoundKiB = 128u << 10;

std::string DiscoverBatch(std::size_t max_bytes, std::size_t max_count) {
  std::string line = "[";
  for (std::size_t i = 0; i < max_count; ++i) {
    std::string one = wire::MakeRequest("rpc.discover", nullptr, i).dump();
    if (line.size() + one.size() + 3 > max_bytes) {
      break;
    }
    line += (i == 0 ? "" : ",") + one;
  }
  return line + "]\n";
}

/// Writes `lines` over and over for `rounds`, as far as the daemon reads
/// them; never reads a reply.
void Flood(const std::string& socket, const std::string& lines, int rounds) {
  RawConn c(socket);
  for (int i = 0; i < rounds; ++i) {
    if (c.WriteSome(lines, 300ms) < lines.size()) {
      break;  // the daemon stopped reading this connection
    }
  }
  std::this_thread::sleep_for(2s);  // keep it open, unread, while others attack
}

TEST(MemoryAttackTest, PeakMemoryStaysBoundedUnderTheTransportAttacks) {
  json policy = {{"rules", json::array({{{"users", json::array({kNobody})},
                                         {"devices", json::array({kEdu})}}})}};
  Daemon daemon(policy);  // the default limits
  {
    RawConn warm(daemon.socket());
    warm.Write(wire::ToLine(wire::MakeRequest("rpc.discover", nullptr, 1)));
    ASSERT_TRUE(warm.ReadJson().contains("result"));
  }
  const std::size_t start_kib = PeakRssKiB(daemon.pid());

  HeldConnections idle(daemon.socket(), kNobody, 200);
  EXPECT_EQ(idle.report()["accepted"], 16) << idle.report();

  const std::string huge = DiscoverBatch((1u << 20) - 16, 1u << 20);  // ~20,000 calls
  const std::string cut = DiscoverBatch(1u << 20, 256);               // 256 calls: cut at 1M
  std::string singles;
  while (singles.size() < (64u << 10)) {
    singles += wire::ToLine(wire::MakeRequest("rpc.discover", nullptr, singles.size()));
  }
  std::vector<std::thread> attackers;
  for (int i = 0; i < 4; ++i) {
    attackers.emplace_back([&] { Flood(daemon.socket(), huge, 8); });
    attackers.emplace_back([&] { Flood(daemon.socket(), cut, 64); });
    attackers.emplace_back([&] { Flood(daemon.socket(), singles, 16); });
  }
  for (auto& t : attackers) {
    t.join();
  }
  // Still serving, root and the hog's own uid alike.
  EXPECT_EQ(RunAs(0, 0,
                  [&]() -> std::string {
                    RawConn c(daemon.socket());
                    c.Write(wire::ToLine(wire::MakeRequest("ping", nullptr, 1)));
                    return c.ReadJson().contains("result") ? "" : "root's ping unanswered";
                  }),
            "");
  const std::size_t peak_kib = PeakRssKiB(daemon.pid());
  std::printf("daemon VmHWM: %zu KiB after start, %zu KiB at the end of the attacks\n", start_kib,
              peak_kib);
  EXPECT_GT(peak_kib, 0u);
  EXPECT_LT(peak_kib, MemoryBoundKiB(kBoundKiB));
}

}  // namespace
}  // namespace vfiod::itest
