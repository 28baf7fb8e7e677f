// The real vfiod binary under FdStoreSupervisor, as under systemd with a
// socket unit and FileDescriptorStoreMax=: the listening socket is passed
// (LISTEN_FDS, named "vfiod.socket"), the fd store outlives each vfiod, and
// a restart hands the next one everything the store holds. Used on the host
// (model kernel) and in the test VM (real kernel), where no systemd runs.
//
// While vfiod runs, a thread reads its notifications, as PID 1 does at once:
// a notify socket nobody reads fills up, and vfiod's next FDSTORE=1 (sent
// with a container's mutex held) would block it for good. Tests reach the
// supervisor through Supervisor(), which holds that thread off.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>

#include "daemon_harness.h"
#include "fd_store_supervisor.h"

namespace vfiod::itest {

class SupervisedVfiod {
 public:
  /// Writes `config` to `dir`/vfiod.json and binds the socket the service
  /// manager passes (`dir`/vfiod.sock). Errors: what failed.
  static Result<std::unique_ptr<SupervisedVfiod>> Create(const fs::path& dir, const json& config) {
    std::unique_ptr<SupervisedVfiod> self(new SupervisedVfiod(dir));
    WriteFile(dir / "vfiod.json", config.dump(2));
    auto supervisor = testing::FdStoreSupervisor::Create(dir.string());
    if (!supervisor) {
      return std::unexpected(supervisor.error());
    }
    self->supervisor_ = std::make_unique<testing::FdStoreSupervisor>(std::move(*supervisor));
    UniqueFd listener(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, self->socket_.c_str(), sizeof addr.sun_path - 1);
    if (::bind(listener.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
        ::listen(listener.get(), 64) != 0) {
      return ErrnoError("bind " + self->socket_);
    }
    self->supervisor_->Add("vfiod.socket", std::move(listener));
    return self;
  }
  SupervisedVfiod(const SupervisedVfiod&) = delete;
  SupervisedVfiod& operator=(const SupervisedVfiod&) = delete;
  ~SupervisedVfiod() {
    Kill(SIGTERM);
    StopPump();
  }

  /// Starts vfiod with the store and waits for READY=1 (up to `ready_ms`:
  /// under TCG on a loaded host, loading the binary over 9p alone has taken
  /// 8 s). "" when it is ready, else what went wrong (with its log).
  std::string Start(int ready_ms = 60'000) {
    ready_seen_ = supervisor_->messages().size();
    UniqueFd log_fd(::open(log_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644));
    testing::FdStoreSupervisor::SpawnOptions options;
    options.env = env_;
    auto pid = supervisor_->Spawn(
        {VFIOD_BINARY, "--config", (dir_ / "vfiod.json").string(), "--foreground"}, options,
        log_fd.get());
    if (!pid) {
      return pid.error().message();
    }
    pid_ = *pid;
    StartPump();
    for (int waited = 0; waited < ready_ms && !Ready(); waited += 20) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return Ready() ? "" : "vfiod did not become ready:\n" + ReadAll(log_);
  }
  /// Sets `name`=`value` in the environment of every vfiod started from now on.
  void SetEnv(const std::string& name, const std::string& value) { env_[name] = value; }
  /// Sends `signo` and reaps vfiod; returns its wait status (-1: none ran).
  int Kill(int signo) {
    if (pid_ <= 0) {
      return -1;
    }
    ::kill(pid_, signo);
    return Wait(-1);
  }
  /// Waits for vfiod to exit by itself (up to ~`ms`; -1: for good); its
  /// wait status, or -1. The notifications it sent on the way out are read.
  int Wait(int ms = 10'000) {
    int status = -1;
    for (int waited = 0; pid_ > 0 && (ms < 0 || waited <= ms); waited += 10) {
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        StopPump();
        (void)supervisor_->Pump(0);
        return status;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return -1;
  }
  /// Pumps until a notification equal to `text` arrived (or ~`ms` passed).
  bool WaitFor(const std::string& text, int ms = 5000) {
    for (int waited = 0; waited <= ms; waited += 20) {
      {
        auto supervisor = Supervisor();
        const auto& m = supervisor->messages();
        if (std::find(m.begin(), m.end(), text) != m.end()) {
          return true;
        }
        if (!pump_.joinable()) {
          (void)supervisor->Pump(20);
          continue;
        }
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return false;
  }
  [[nodiscard]] Result<client::Client> Connect() const { return client::Client::Connect(socket_); }
  /// The supervisor, held for the caller while the returned object lives.
  class Held {
   public:
    Held(std::mutex& mu, testing::FdStoreSupervisor& s) : lock_(mu), s_(s) {}
    testing::FdStoreSupervisor* operator->() const { return &s_; }

   private:
    std::unique_lock<std::mutex> lock_;
    testing::FdStoreSupervisor& s_;
  };
  [[nodiscard]] Held Supervisor() { return Held(mu_, *supervisor_); }
  [[nodiscard]] const std::string& socket() const { return socket_; }
  [[nodiscard]] std::string log() const { return ReadAll(log_); }
  [[nodiscard]] pid_t pid() const { return pid_; }

 private:
  explicit SupervisedVfiod(const fs::path& dir)
      : dir_(dir), socket_((dir / "vfiod.sock").string()), log_((dir / "vfiod.log").string()) {}
  void StartPump() {
    pumping_ = true;
    pump_ = std::thread([this] {
      while (pumping_) {
        std::lock_guard lock(mu_);
        (void)supervisor_->Pump(5);
      }
    });
  }
  void StopPump() {
    pumping_ = false;
    if (pump_.joinable()) {
      pump_.join();
    }
  }
  bool Ready() {
    std::lock_guard lock(mu_);
    const auto& m = supervisor_->messages();
    return std::any_of(m.begin() + static_cast<long>(ready_seen_), m.end(),
                       [](const std::string& s) { return s.starts_with("READY=1"); });
  }

  fs::path dir_;
  std::string socket_;
  std::string log_;
  std::unique_ptr<testing::FdStoreSupervisor> supervisor_;
  std::mutex mu_;  // the supervisor's, between the pump thread and the test
  std::atomic<bool> pumping_ = false;
  std::thread pump_;
  pid_t pid_ = -1;
  size_t ready_seen_ = 0;
  std::map<std::string, std::string> env_;
};

}  // namespace vfiod::itest
