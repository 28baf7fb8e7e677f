#include "load/load_driver.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/memfd.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <deque>
#include <fstream>
#include <latch>
#include <optional>
#include <random>
#include <thread>
#include <vector>

namespace vfiod::load {
namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;
constexpr uint64_t kPage = 4096;

UniqueFd Memfd(uint64_t size) {
  UniqueFd fd(
      static_cast<int>(::syscall(SYS_memfd_create, "vfiod-load", MFD_CLOEXEC | MFD_ALLOW_SEALING)));
  if (fd.valid() && ::ftruncate(fd.get(), static_cast<off_t>(size)) != 0) {
    return UniqueFd();
  }
  return fd;
}

/// One client's connection, region and the mappings it holds.
class LoadClient {
 public:
  LoadClient(const MixedLoadConfig& config, int index)
      : config_(config), rng_(config.seed * 1'000'003 + static_cast<uint64_t>(index)) {}

  /// Connects, attaches the container and registers the region; "" or why not.
  std::string SetUp() {
    auto c = client::Client::Connect(config_.socket);
    if (!c) {
      return "connect: " + c.error().message();
    }
    client_.emplace(std::move(*c));
    auto attached = client_->Call("container.attach", {{"name", config_.container}});
    if (!attached) {
      return "container.attach: " + attached.error().Describe();
    }
    container_ = attached->result["container"];
    UniqueFd memfd = Memfd(config_.region_bytes);
    const int fds[] = {memfd.get()};
    auto reg = client_->Call("dma.register", {{"fd", {{"fd", 0}}}}, fds);
    if (!reg) {
      return "dma.register: " + reg.error().Describe();
    }
    region_ = reg->result["region"];
    return "";
  }

  /// Sends `config.requests` mixed requests; the figures go to `report`.
  Clock::time_point Run(MixedLoadReport& report) {
    for (uint64_t i = 0; i < config_.requests; ++i) {
      const char* op = NextOp();
      const auto start = Clock::now();
      client::CallResult r = Send(op);
      const double ms = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
      OpFigures& fig = report.by_op[op];
      ++fig.calls;
      fig.total_ms += ms;
      fig.max_ms = std::max(fig.max_ms, ms);
      ++report.requests;
      if (!r) {
        ++fig.errors;
        ++report.errors;
        if (report.first_error.empty()) {
          report.first_error = std::string(op) + ": " + r.error().Describe();
        }
      } else if (op == std::string_view("dma.map_fd")) {
        held_.push_back(r->result["mapping"]);
      }
    }
    return Clock::now();
  }

  /// Frees what it holds and unregisters; "" or what failed.
  std::string TearDown() {
    std::string failed;
    for (uint64_t m : held_) {
      if (auto r = client_->Call("dma.free", {{"mapping", m}}); !r) {
        failed += "dma.free: " + r.error().Describe() + "; ";
      }
    }
    if (auto r = client_->Call("dma.unregister", {{"region", region_}}); !r) {
      failed += "dma.unregister: " + r.error().Describe() + "; ";
    }
    return failed;
  }

 private:
  const char* NextOp() {
    const uint64_t roll = rng_() % 100;
    if (roll < 50) {  // map or free, keeping 0 .. max_held mappings
      if (held_.empty()) {
        return "dma.map_fd";
      }
      if (held_.size() >= config_.max_held) {
        return "dma.free";
      }
      return roll < 25 ? "dma.map_fd" : "dma.free";
    }
    if (roll < 65) {
      return held_.empty() ? "ping" : "dma.info";
    }
    return roll < 80 ? "dma.list" : "ping";
  }

  client::CallResult Send(std::string_view op) {
    if (op == "dma.map_fd") {
      const uint64_t region_pages = config_.region_bytes / kPage;
      const uint64_t pages = 1 + rng_() % std::min<uint64_t>(config_.max_slice_pages, region_pages);
      const uint64_t first = rng_() % (region_pages - pages + 1);
      return client_->Call("dma.map_fd", {{"container", container_},
                                          {"region", region_},
                                          {"offset", first * kPage},
                                          {"size", pages * kPage}});
    }
    if (op == "dma.free") {
      const size_t at = rng_() % held_.size();
      const uint64_t m = held_[at];
      held_.erase(held_.begin() + static_cast<std::ptrdiff_t>(at));
      return client_->Call("dma.free", {{"mapping", m}});
    }
    if (op == "dma.info") {
      return client_->Call("dma.info", {{"mapping", held_[rng_() % held_.size()]}});
    }
    if (op == "dma.list") {
      return client_->Call("dma.list", {{"container", container_}});
    }
    return client_->Call("ping");
  }

  const MixedLoadConfig& config_;
  std::mt19937_64 rng_;
  std::optional<client::Client> client_;
  uint64_t container_ = 0;
  uint64_t region_ = 0;
  std::vector<uint64_t> held_;
};

void Merge(const MixedLoadReport& from, MixedLoadReport& into) {
  into.requests += from.requests;
  into.errors += from.errors;
  if (into.first_error.empty()) {
    into.first_error = from.first_error;
  }
  for (const auto& [op, f] : from.by_op) {
    OpFigures& to = into.by_op[op];
    to.calls += f.calls;
    to.errors += f.errors;
    to.total_ms += f.total_ms;
    to.max_ms = std::max(to.max_ms, f.max_ms);
  }
}

/// The body of a child to be killed: attach, register, then map the region
/// whole and free it, over and over, signalling 'r' before the first map.
[[noreturn]] void KilledChild(const KillConfig& config, int ready_fd) {
  auto c = client::Client::Connect(config.socket);
  if (!c) {
    ::_exit(2);
  }
  auto attached = c->Call("container.attach", {{"name", config.container}});
  UniqueFd memfd = Memfd(config.region_bytes);
  const int fds[] = {memfd.get()};
  auto reg = c->Call("dma.register", {{"fd", {{"fd", 0}}}}, fds);
  if (!attached || !reg) {
    ::_exit(3);
  }
  const json map = {{"container", attached->result["container"]},
                    {"region", reg->result["region"]},
                    {"size", config.region_bytes}};
  const char ready = 'r';
  (void)!::write(ready_fd, &ready, 1);
  for (;;) {
    auto m = c->Call("dma.map_fd", map);
    if (m) {
      (void)c->Call("dma.free", {{"mapping", m->result["mapping"]}});
    }
  }
}

struct Child {
  pid_t pid = -1;
  int ready = -1;
};

Child StartChild(const KillConfig& config) {
  int p[2] = {-1, -1};
  if (::pipe2(p, O_CLOEXEC) != 0) {
    return {};
  }
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::close(p[0]);
    KilledChild(config, p[1]);
  }
  ::close(p[1]);
  return Child{pid, p[0]};
}

/// Waits for the child's 'r', lets it run `delay`, SIGKILLs and reaps it.
/// False when it died before signalling.
bool KillAfter(const Child& child, std::chrono::microseconds delay) {
  char byte = 0;
  const bool ready = ::read(child.ready, &byte, 1) == 1;
  if (ready) {
    std::this_thread::sleep_for(delay);
  }
  ::kill(child.pid, SIGKILL);
  ::waitpid(child.pid, nullptr, 0);
  ::close(child.ready);
  return ready;
}

}  // namespace

MixedLoadReport RunMixedLoad(const MixedLoadConfig& config) {
  const auto n = static_cast<size_t>(config.clients);
  std::vector<MixedLoadReport> reports(n);
  std::vector<Clock::time_point> ends(n);
  std::vector<std::string> failures(n);
  std::latch set_up(static_cast<std::ptrdiff_t>(n));
  std::latch go(1);
  std::vector<std::thread> threads;
  for (size_t i = 0; i < n; ++i) {
    threads.emplace_back([&, i] {
      LoadClient client(config, static_cast<int>(i));
      failures[i] = client.SetUp();
      set_up.count_down();
      go.wait();
      if (!failures[i].empty()) {
        ends[i] = Clock::now();
        return;
      }
      ends[i] = client.Run(reports[i]);
      failures[i] = client.TearDown();
    });
  }
  set_up.wait();
  const auto start = Clock::now();
  go.count_down();
  for (auto& t : threads) {
    t.join();
  }
  MixedLoadReport total;
  Clock::time_point end = start;
  for (size_t i = 0; i < n; ++i) {
    Merge(reports[i], total);
    end = std::max(end, ends[i]);
    if (!failures[i].empty()) {
      ++total.errors;
      if (total.first_error.empty()) {
        total.first_error = "client " + std::to_string(i) + ": " + failures[i];
      }
    }
  }
  total.seconds = std::chrono::duration<double>(end - start).count();
  return total;
}

KillReport RunKills(const KillConfig& config) {
  std::mt19937_64 rng(config.seed);
  KillReport report;
  const auto start = Clock::now();
  std::deque<Child> alive;
  auto reap_oldest = [&] {
    const auto delay = std::chrono::microseconds(rng() % (config.max_delay_us + 1));
    if (KillAfter(alive.front(), delay)) {
      ++report.killed;
    } else {
      ++report.never_ready;
    }
    alive.pop_front();
  };
  for (int i = 0; i < config.kills; ++i) {
    if (static_cast<int>(alive.size()) >= config.concurrent) {
      reap_oldest();
    }
    Child child = StartChild(config);
    if (child.pid <= 0) {
      ++report.never_ready;
      continue;
    }
    alive.push_back(child);
  }
  while (!alive.empty()) {
    reap_oldest();
  }
  report.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  return report;
}

Footprint FootprintOf(pid_t pid) {
  Footprint f;
  const std::string dir = "/proc/" + std::to_string(pid);
  if (DIR* d = ::opendir((dir + "/fd").c_str())) {
    f.fds = 0;
    while (dirent* e = ::readdir(d)) {
      f.fds += e->d_name[0] != '.' ? 1 : 0;
    }
    ::closedir(d);
  }
  std::ifstream status(dir + "/status");
  std::string key;
  for (std::string line; std::getline(status, line);) {
    if (line.rfind("VmRSS:", 0) == 0) {
      f.rss_kib = std::strtoull(line.c_str() + 6, nullptr, 10);
    } else if (line.rfind("VmHWM:", 0) == 0) {
      f.peak_kib = std::strtoull(line.c_str() + 6, nullptr, 10);
    }
  }
  return f;
}

uint64_t EnvOr(const char* name, uint64_t fallback) {
  const char* text = std::getenv(name);
  if (text == nullptr || *text == '\0') {
    return fallback;
  }
  char* end = nullptr;
  const uint64_t value = std::strtoull(text, &end, 10);
  return *end == '\0' ? value : fallback;
}

}  // namespace vfiod::load
