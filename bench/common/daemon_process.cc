#include "common/daemon_process.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>
#include <utility>

#include "common/stats.h"
#include "proto/unique_fd.h"

namespace vfiod::bench {
namespace {

bool SocketAnswers(const std::string& path) {
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  (void)std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path.c_str());
  return fd && ::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
}

void PrintLog(const std::string& log) {
  std::ifstream in(log);
  std::stringstream text;
  text << in.rdbuf();
  (void)std::fprintf(stderr, "vfiod log (%s):\n%s\n", log.c_str(), text.str().c_str());
}

}  // namespace

Result<DaemonProcess> DaemonProcess::Start(const std::string& binary, const std::string& dir,
                                           nlohmann::json config) {
  const std::string socket = dir + "/vfiod.sock";
  const std::string config_path = dir + "/vfiod.json";
  const std::string log = dir + "/vfiod.log";
  config["socket"]["path"] = socket;
  std::ofstream(config_path) << config.dump(2) << '\n';
  const pid_t pid = ::fork();
  if (pid < 0) {
    return ErrnoError("fork");
  }
  if (pid == 0) {
    int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd >= 0) {
      ::dup2(fd, 2);
    }
    ::execl(binary.c_str(), binary.c_str(), "--config", config_path.c_str(), "--foreground",
            static_cast<char*>(nullptr));
    ::_exit(127);
  }
  DaemonProcess daemon(pid, socket, log);
  const Clock::time_point deadline = Clock::now() + std::chrono::seconds(20);
  while (Clock::now() < deadline) {
    if (SocketAnswers(socket)) {
      return daemon;
    }
    int status = 0;
    if (::waitpid(pid, &status, WNOHANG) == pid) {
      daemon.pid_ = -1;
      PrintLog(log);
      return Fail(ECHILD, "start vfiod", "it exited during start-up");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  PrintLog(log);
  return Fail(ETIMEDOUT, "start vfiod", "its socket did not answer within 20 s");
}

DaemonProcess::DaemonProcess(DaemonProcess&& other) noexcept
    : pid_(std::exchange(other.pid_, -1)),
      socket_(std::move(other.socket_)),
      log_(std::move(other.log_)) {}

DaemonProcess::~DaemonProcess() { Stop(); }

int DaemonProcess::Stop() {
  if (pid_ <= 0) {
    return -1;
  }
  ::kill(pid_, SIGTERM);
  int status = 0;
  ::waitpid(std::exchange(pid_, -1), &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

std::map<std::string, uint64_t> ProcStatusBytes(pid_t pid) {
  std::map<std::string, uint64_t> out;
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(in, line);) {
    const size_t colon = line.find(':');
    if (colon == std::string::npos || !line.ends_with(" kB")) {
      continue;
    }
    out[line.substr(0, colon)] = std::stoull(line.substr(colon + 1)) * 1024;
  }
  return out;
}

uint64_t CountFds(pid_t pid) {
  uint64_t count = 0;
  const std::string path = "/proc/" + std::to_string(pid) + "/fd";
  if (DIR* dir = ::opendir(path.c_str())) {
    while (dirent* entry = ::readdir(dir)) {
      count += entry->d_name[0] != '.' ? 1 : 0;
    }
    ::closedir(dir);
  }
  return count;
}

uint64_t CountMaps(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/maps");
  uint64_t count = 0;
  for (std::string line; std::getline(in, line);) {
    ++count;
  }
  return count;
}

uint64_t OpenFilesLimit(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/limits");
  for (std::string line; std::getline(in, line);) {
    if (line.starts_with("Max open files")) {
      std::istringstream fields(line.substr(14));
      uint64_t soft = 0;
      fields >> soft;
      return soft;
    }
  }
  return 0;
}

uint64_t ReadNumber(const std::string& path) {
  std::ifstream in(path);
  uint64_t value = 0;
  in >> value;
  return in ? value : 0;
}

}  // namespace vfiod::bench
