// Starting the real vfiod binary for integration tests: a temp folder with a
// fake sysfs tree and a config (model kernel), or, inside the test VM, the
// real kernel and /sys. The daemon runs as a child process; tests talk to it
// only through its socket with the client library.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "client/vfiod_client.h"
#include "support/sysfs_tree.h"

namespace vfiod::itest {

namespace fs = std::filesystem;
using nlohmann::json;

inline constexpr const char* kEdu = "0000:00:03.0";
inline constexpr const char* kIvshmem = "0000:00:04.0";
inline constexpr const char* kNonViable = "0000:00:1f.3";
inline constexpr const char* kUnbound = "0000:00:05.0";
inline constexpr uid_t kNobody = 65534;

inline bool InVm() { return std::getenv("VFIOD_IN_VM") != nullptr; }

/// A bound on the daemon's memory (KiB) as the release build is held to it.
/// Under AddressSanitizer the daemon's RSS is mostly ASan's own: its shadow
/// memory and a quarantine that keeps up to 256 MiB of freed blocks. There
/// the bound grows by 1 GiB, so only a runaway is caught; the release build
/// (the README's test command runs both) checks the real bound.
inline constexpr std::size_t MemoryBoundKiB(std::size_t release_kib) {
#if defined(__SANITIZE_ADDRESS__)
  return release_kib + (std::size_t{1} << 20);
#else
  return release_kib;
#endif
}

/// The whole text of a file ("" when it cannot be read).
inline std::string ReadAll(const fs::path& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

inline void WriteFile(const fs::path& path, const std::string& text) {
  std::ofstream(path) << text;
}

/// A fake sysfs tree with the VM's devices: edu and ivshmem on vfio-pci in
/// their own groups, the ICH9 group 7 (00:1f.3 on vfio-pci, 00:1f.0 on a host
/// driver: not viable) and a NIC on its host driver (for bind tests).
class FakeSysfsTree {
 public:
  explicit FakeSysfsTree(fs::path root) : root_(std::move(root)) {
    fs::create_directories(root_ / "bus/pci/devices");
    fs::create_directories(root_ / "kernel/iommu_groups");
    test::WriteSysfsFile(root_ / "bus/pci/drivers_probe", "");
    Add(kEdu, "0x1234", "0x11e8", 3, "vfio-pci", kEduResource);
    Add(kIvshmem, "0x1af4", "0x1110", 4, "vfio-pci", kIvshmemResource);
    Add(kNonViable, "0x8086", "0x2930", 7, "vfio-pci", kEmptyResource);
    Add("0000:00:1f.0", "0x8086", "0x2918", 7, "lpc_ich", kEmptyResource);
    Add(kUnbound, "0x8086", "0x100e", 5, "e1000", kEduResource);
  }
  [[nodiscard]] const fs::path& root() const { return root_; }
  [[nodiscard]] std::string DriverOf(const std::string& bdf) const {
    std::error_code ec;
    auto target = fs::read_symlink(root_ / "bus/pci/devices" / bdf / "driver", ec);
    return ec ? "" : target.filename().string();
  }

 private:
  void Add(const std::string& bdf, const std::string& vendor, const std::string& device, int group,
           const std::string& driver, const char* resource) {
    test::AddSysfsDevice(root_, {.bdf = bdf,
                                 .vendor = vendor,
                                 .device = device,
                                 .group = group,
                                 .driver = driver,
                                 .resource = resource,
                                 .config = ConfigSpace(vendor, device, bdf == kEdu)});
  }

  /// The first 256 bytes of config space. Edu's as QEMU builds it: INTA and
  /// one MSI capability (64-bit, one vector) at 0x40; the others none.
  static std::string ConfigSpace(const std::string& vendor, const std::string& device, bool edu) {
    std::string c(256, '\0');
    auto put16 = [&](size_t at, unsigned long v) {
      c[at] = static_cast<char>(v & 0xff);
      c[at + 1] = static_cast<char>((v >> 8) & 0xff);
    };
    put16(0x00, std::stoul(vendor, nullptr, 16));
    put16(0x02, std::stoul(device, nullptr, 16));
    c[0x0a] = static_cast<char>(0xff);  // class 0x00ff00
    put16(0x2c, 0x1af4);
    put16(0x2e, 0x1100);
    if (edu) {
      put16(0x06, 0x0010);  // status: capability list
      c[0x34] = 0x40;
      c[0x3d] = 1;          // INTA
      c[0x40] = 0x05;       // MSI, last in the chain
      put16(0x42, 0x0080);  // 64-bit address, one vector
    }
    return c;
  }

  static constexpr const char* kEmptyResource =
      "0x0000000000000000 0x0000000000000000 0x0000000000000000\n";
  static constexpr const char* kEduResource =
      "0x00000000fea00000 0x00000000feafffff 0x0000000000040200\n";
  static constexpr const char* kIvshmemResource =
      "0x00000000feb00000 0x00000000feb000ff 0x0000000000040200\n"
      "0x0000000000000000 0x0000000000000000 0x0000000000000000\n"
      "0x0000000800000000 0x0000000803ffffff 0x000000000014220c\n";
  fs::path root_;
};

/// How the daemon is started: on its own socket, or the way systemd does it
/// (socket activation through systemd-socket-activate, and a NOTIFY_SOCKET
/// that receives its sd_notify messages).
enum class Launch { kDirect, kSystemdLike };

/// One vfiod process with its own temp folder, config and socket.
class Daemon {
 public:
  /// Starts vfiod (path from VFIOD_BINARY) and waits until its socket answers.
  /// `policy` replaces the default policy section; `limits` adds to (or
  /// overrides) the limits section; `patch` is merged into the whole config
  /// last (RFC 7386, e.g. {"logging": {"level": "warn"}}).
  explicit Daemon(json policy = DefaultPolicy(), std::string chunk = "2M",
                  Launch launch = Launch::kDirect, const json& limits = json::object(),
                  const json& patch = json::object())
      : launch_(launch) {
    std::string tmpl = (fs::temp_directory_path() / "vfiod-itest-XXXXXX").string();
    dir_ = ::mkdtemp(tmpl.data());
    fs::permissions(dir_, fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec |
                              fs::perms::others_read | fs::perms::others_exec);
    socket_ = (dir_ / "vfiod.sock").string();
    json config = {{"socket", {{"path", socket_}, {"group", nullptr}, {"mode", "0666"}}},
                   {"limits", {{"map_chunk_bytes", chunk}, {"worker_threads", 4}}},
                   {"logging", {{"level", "debug"}, {"target", "stderr"}}},
                   {"policy", std::move(policy)}};
    config["limits"].update(limits);
    if (InVm()) {
      config["kernel"] = "linux";
      config["sysfs_root"] = "/sys";
    } else {
      tree_ = std::make_unique<FakeSysfsTree>(dir_ / "sys");
      config["kernel"] = "model";
      config["sysfs_root"] = (dir_ / "sys").string();
      config["model"] = {
          {"devices", json::array({ModelDev(kEdu, "1234", "11e8", 3, true),
                                   ModelDev(kIvshmem, "1af4", "1110", 4, true),
                                   ModelDev(kNonViable, "8086", "2930", 7, true),
                                   ModelDev("0000:00:1f.0", "8086", "2918", 7, false),
                                   ModelDev(kUnbound, "8086", "100e", 5, false)})}};
    }
    config.merge_patch(patch);
    WriteFile(dir_ / "vfiod.json", config.dump(2));
    Start();
  }
  ~Daemon() {
    Stop();
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  Daemon(const Daemon&) = delete;
  Daemon& operator=(const Daemon&) = delete;

  static json DefaultPolicy() {
    return {
        {"rules",
         json::array({{{"users", json::array({kNobody})},
                       {"devices", json::array({kEdu})},
                       {"quota", {{"locked_bytes", "4M"}, {"mappings", 2}, {"containers", 1}}}}})},
        {"root_only", json::array({"device.unbind"})}};
  }

  [[nodiscard]] client::Client Connect() const {
    auto c = client::Client::Connect(socket_);
    if (!c) {
      std::fprintf(stderr, "connect %s: %s\n", socket_.c_str(), c.error().message().c_str());
      std::abort();
    }
    return std::move(*c);
  }
  [[nodiscard]] const std::string& socket() const { return socket_; }
  [[nodiscard]] pid_t pid() const { return pid_; }
  [[nodiscard]] const FakeSysfsTree* tree() const { return tree_.get(); }
  [[nodiscard]] fs::path log_path() const { return dir_ / "vfiod.log"; }
  /// Every sd_notify datagram received so far (kSystemdLike only), joined by '|'.
  [[nodiscard]] std::string Notifications() {
    char buf[4096];
    for (ssize_t n; (n = ::recv(notify_.get(), buf, sizeof buf, MSG_DONTWAIT)) > 0;) {
      notes_ += std::string(buf, static_cast<size_t>(n)) + "|";
    }
    return notes_;
  }

  /// SIGTERM, then waits; returns the exit status (or -1 when it was killed).
  int Stop() {
    if (pid_ <= 0) {
      return exit_status_;
    }
    ::kill(pid_, SIGTERM);
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
    exit_status_ = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    return exit_status_;
  }

 private:
  static json ModelDev(const char* bdf, const char* vendor, const char* device, int group,
                       bool bound) {
    return {
        {"bdf", bdf}, {"vendor", vendor}, {"device", device}, {"group", group}, {"bound", bound}};
  }

  void Start() {
    std::string config = (dir_ / "vfiod.json").string();
    std::string log = log_path().string();
    std::string notify_path = (dir_ / "notify.sock").string();
    if (launch_ == Launch::kSystemdLike) {
      notify_ = UniqueFd(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
      sockaddr_un addr{};
      addr.sun_family = AF_UNIX;
      std::strncpy(addr.sun_path, notify_path.c_str(), sizeof addr.sun_path - 1);
      if (::bind(notify_.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
        std::abort();
      }
    }
    pid_ = ::fork();
    if (pid_ == 0) {
      int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      ::dup2(fd, 2);
      if (launch_ == Launch::kSystemdLike) {
        ::setenv("NOTIFY_SOCKET", notify_path.c_str(), 1);
        ::execl("/usr/bin/systemd-socket-activate", "systemd-socket-activate", "-E",
                "NOTIFY_SOCKET", "-l", socket_.c_str(), VFIOD_BINARY, "--config", config.c_str(),
                static_cast<char*>(nullptr));
      } else {
        ::execl(VFIOD_BINARY, VFIOD_BINARY, "--config", config.c_str(), "--foreground",
                static_cast<char*>(nullptr));
      }
      ::_exit(127);
    }
    // Wait for the socket to accept (the daemon's start-up, not a timing assertion).
    for (int i = 0; i < 1000; ++i) {
      if (client::Client::Connect(socket_)) {
        if (launch_ == Launch::kSystemdLike) {
          // What the unit's SocketMode= does (systemd-socket-activate has no
          // such option), so other users may connect as to a direct daemon.
          (void)::chmod(socket_.c_str(), 0666);
        }
        return;
      }
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    std::fprintf(stderr, "vfiod did not start; its log:\n%s\n", ReadAll(log).c_str());
    std::abort();
  }

  Launch launch_;
  UniqueFd notify_;
  std::string notes_;
  fs::path dir_;
  std::string socket_;
  std::unique_ptr<FakeSysfsTree> tree_;
  pid_t pid_ = -1;
  int exit_status_ = -1;
};

/// Fails the test (returning from it) unless the call `r` succeeded.
#define ASSERT_CALL_OK(r) ASSERT_TRUE((r).has_value()) << (r).error().Describe()

/// The error code of a failed call, or 0 when it succeeded.
inline int CodeOf(const client::CallResult& r) { return r ? 0 : r.error().code; }

/// data.detail of a failed call ("" when absent).
inline std::string DetailOf(const client::CallResult& r) {
  if (r || !r.error().data.is_object() || !r.error().data.contains("detail")) {
    return "";
  }
  return r.error().data["detail"].get<std::string>();
}

}  // namespace vfiod::itest
