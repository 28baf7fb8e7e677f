#include "fair/load.h"

#include <fcntl.h>
#include <grp.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>

#include "client/vfiod_client.h"

namespace vfiod::bench {
namespace {

using nlohmann::json;

constexpr const char* kFloodName = "fair-bench-flood";

double MicrosSince(Clock::time_point start) { return SecondsSince(start) * 1e6; }

// The child's side: one line in ("r <rounds>"), one JSON line out, until EOF.
json Rounds(client::Client& c, uint64_t container, int rounds) {
  json out = {{"ping", json::array()}, {"alloc", json::array()}, {"free", json::array()}};
  for (int i = 0; i < rounds; ++i) {
    Clock::time_point t = Clock::now();
    auto pong = c.Call("ping");
    out["ping"].push_back(MicrosSince(t));
    t = Clock::now();
    auto map = c.Call("dma.alloc", {{"container", container}, {"size", 4096}, {"backing", "4k"}});
    out["alloc"].push_back(MicrosSince(t));
    if (!pong || !map) {
      return {{"error", (pong ? map : pong).error().Describe()}};
    }
    t = Clock::now();
    auto freed = c.Call("dma.free", {{"mapping", map->result["mapping"]}});
    out["free"].push_back(MicrosSince(t));
    if (!freed) {
      return {{"error", freed.error().Describe()}};
    }
  }
  return out;
}

[[noreturn]] void ChildMain(const std::string& socket, const std::string& device, uid_t uid, int in,
                            int out) {
  FILE* answers = ::fdopen(out, "w");
  auto say = [&](const json& j) {
    (void)std::fprintf(answers, "%s\n", j.dump().c_str());
    (void)std::fflush(answers);
  };
  if (::setgroups(0, nullptr) != 0 || ::setresgid(uid, uid, uid) != 0 ||
      ::setresuid(uid, uid, uid) != 0) {
    say({{"error", "cannot drop to uid " + std::to_string(uid)}});
    ::_exit(1);
  }
  auto c = client::Client::Connect(socket);
  auto made = c ? c->Call("container.create", {{"devices", {device}}}) : client::CallResult();
  FILE* orders = ::fdopen(in, "r");
  // " r %d": a trailing "\n" would make fscanf wait for the next order.
  for (int rounds = 0; std::fscanf(orders, " r %d", &rounds) == 1;) {
    if (!c) {
      say({{"error", "connect: " + c.error().message()}});
    } else if (!made) {
      say({{"error", "container.create: " + made.error().Describe()}});
    } else {
      say(Rounds(*c, made->result["container"], rounds));
    }
  }
  ::_exit(0);
}

}  // namespace

OtherUser::OtherUser(const std::string& socket, const std::string& device, uid_t uid) {
  int down[2];
  int up[2];
  if (::pipe2(down, O_CLOEXEC) != 0) {
    return;
  }
  UniqueFd child_in(down[0]);
  to_child_.reset(down[1]);
  if (::pipe2(up, O_CLOEXEC) != 0) {
    return;
  }
  UniqueFd child_out(up[1]);
  from_child_.reset(up[0]);
  pid_ = ::fork();
  if (pid_ == 0) {
    to_child_.reset();
    from_child_.reset();
    ChildMain(socket, device, uid, child_in.release(), child_out.release());
  }
}

OtherUser::~OtherUser() {
  to_child_.reset();  // EOF: the child exits
  if (pid_ > 0) {
    ::waitpid(pid_, nullptr, 0);
  }
}

json OtherUser::Run(int rounds) {
  const std::string order = "r " + std::to_string(rounds) + "\n";
  if (pid_ <= 0 || ::write(to_child_.get(), order.data(), order.size()) != ssize_t(order.size())) {
    return {{"error", "the other user's process is not there"}};
  }
  std::string line;
  char c = 0;
  while (::read(from_child_.get(), &c, 1) == 1 && c != '\n') {
    line += c;
  }
  json answer = json::parse(line, nullptr, false);
  return answer.is_discarded() ? json{{"error", "no answer: " + line}} : answer;
}

std::string Flood::Start() {
  auto owner = client::Client::Connect(plan_.socket);
  if (!owner) {
    return "connect: " + owner.error().message();
  }
  auto made = owner->Call("container.create", {{"devices", {plan_.device}}, {"name", kFloodName}});
  if (!made) {
    return "container.create: " + made.error().Describe();
  }
  const uint64_t container = made->result["container"];
  container_ = container;
  started_ = Clock::now();
  for (int i = 0; i < plan_.connections; ++i) {
    threads_.emplace_back([this, container] { Loop(container); });
  }
  while (maps_.load() == 0 && errors_.load() == 0) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return errors_.load() == 0 ? "" : "the flood's first maps failed";
}

void Flood::Loop(uint64_t container) {
  auto c = client::Client::Connect(plan_.socket);
  if (!c || !c->Call("container.attach", {{"name", kFloodName}})) {
    ++errors_;
    return;
  }
  const json params = {{"container", container}, {"size", plan_.size}, {"backing", plan_.backing}};
  const std::vector<client::BatchCall> maps(plan_.inflight, client::BatchCall{"dma.alloc", params});
  while (!stop_.load()) {
    auto mapped = c->Batch(maps, {}, client::kNoTimeout);
    if (!mapped) {
      ++errors_;
      return;
    }
    std::vector<client::BatchCall> frees;
    for (const auto& r : *mapped) {
      if (!r) {
        ++errors_;
        continue;
      }
      ++maps_;
      frees.push_back({"dma.free", {{"mapping", r->result["mapping"]}}});
    }
    if (!frees.empty() && !c->Batch(frees, {}, client::kNoTimeout)) {
      ++errors_;
    }
  }
}

json Flood::Stop() {
  if (threads_.empty()) {
    return result_;
  }
  stop_ = true;
  for (std::thread& t : threads_) {
    t.join();
  }
  threads_.clear();
  const double seconds = SecondsSince(started_);
  result_ = {{"maps", maps_.load()},
             {"bytes", maps_.load() * plan_.size},
             {"errors", errors_.load()},
             {"seconds", seconds},
             {"maps_per_s", static_cast<double>(maps_.load()) / seconds}};
  // The named container outlives its sessions: destroy it (and its mappings).
  if (auto c = client::Client::Connect(plan_.socket)) {
    (void)c->Call("container.destroy", {{"container", container_}});
  }
  return result_;
}

}  // namespace vfiod::bench
