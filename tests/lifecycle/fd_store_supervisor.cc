#include "fd_store_supervisor.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <sstream>

extern char** environ;

namespace vfiod::testing {

namespace {

constexpr size_t kMaxFdsPerDatagram = 253;  // the kernel's SCM_MAX_FD

bool HasLine(const std::string& text, const std::string& line) {
  std::istringstream in(text);
  for (std::string l; std::getline(in, l);) {
    if (l == line) {
      return true;
    }
  }
  return false;
}

std::string Value(const std::string& text, const std::string& key, const std::string& fallback) {
  std::istringstream in(text);
  for (std::string l; std::getline(in, l);) {
    if (l.starts_with(key + "=")) {
      return l.substr(key.size() + 1);
    }
  }
  return fallback;
}

/// Writes the decimal `value` into `out` (async-signal-safe: used after fork).
void FormatPid(pid_t value, char* out) {
  char digits[16];
  int n = 0;
  do {
    digits[n++] = static_cast<char>('0' + value % 10);
    value /= 10;
  } while (value > 0);
  while (n > 0) {
    *out++ = digits[--n];
  }
  *out = '\0';
}

}  // namespace

Result<FdStoreSupervisor> FdStoreSupervisor::Create(const std::string& dir, bool abstract) {
  static std::atomic<int> counter{0};
  FdStoreSupervisor s;
  std::string name =
      "vfiod-notify-" + std::to_string(::getpid()) + "-" + std::to_string(counter.fetch_add(1));
  s.sock_ = UniqueFd(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!s.sock_) {
    return ErrnoError("socket");
  }
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  socklen_t len = 0;
  if (abstract) {
    s.address_ = "@" + name;
    std::memcpy(addr.sun_path + 1, name.data(), name.size());
    len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + name.size());
  } else {
    s.path_ = dir + "/" + name;
    s.address_ = s.path_;
    if (s.path_.size() >= sizeof(addr.sun_path)) {
      return Fail(ENAMETOOLONG, "bind", s.path_);
    }
    std::memcpy(addr.sun_path, s.path_.c_str(), s.path_.size() + 1);
    len = sizeof(addr);
  }
  if (::bind(s.sock_.get(), reinterpret_cast<sockaddr*>(&addr), len) < 0) {
    return ErrnoError("bind " + s.address_);
  }
  return s;
}

FdStoreSupervisor::~FdStoreSupervisor() {
  if (sock_ && !path_.empty()) {
    ::unlink(path_.c_str());
  }
}

Result<int> FdStoreSupervisor::Pump(int timeout_ms) {
  pollfd p{sock_.get(), POLLIN, 0};
  int ready = ::poll(&p, 1, timeout_ms);
  if (ready < 0) {
    return ErrnoError("poll");
  }
  int received = 0;
  while (true) {
    char buf[4096];
    alignas(cmsghdr) unsigned char control[CMSG_SPACE(sizeof(int) * kMaxFdsPerDatagram)];
    iovec iov{buf, sizeof(buf)};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof(control);
    ssize_t n = ::recvmsg(sock_.get(), &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    if (n < 0) {
      if (errno == EAGAIN || errno == EINTR) {
        return received;
      }
      return ErrnoError("recvmsg");
    }
    std::vector<UniqueFd> fds;
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
      if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
        size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < count; ++i) {
          int fd = -1;
          std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
          fds.emplace_back(fd);
        }
      }
    }
    Apply(std::string(buf, static_cast<size_t>(n)), std::move(fds));
    ++received;
  }
}

void FdStoreSupervisor::Apply(const std::string& text, std::vector<UniqueFd> fds) {
  messages_.push_back(text);
  if (HasLine(text, "FDSTOREREMOVE=1")) {
    const std::string name = Value(text, "FDNAME", "");
    std::erase_if(store_, [&](const Entry& e) { return e.name == name; });
  }
  if (!HasLine(text, "FDSTORE=1")) {
    return;  // fds sent without FDSTORE=1 are closed, as systemd does
  }
  const std::string name = Value(text, "FDNAME", "stored");
  for (UniqueFd& fd : fds) {
    struct stat st {};
    if (::fstat(fd.get(), &st) < 0) {
      continue;
    }
    bool duplicate = std::any_of(store_.begin(), store_.end(), [&](const Entry& e) {
      return e.dev == st.st_dev && e.ino == st.st_ino;
    });
    if (!duplicate) {
      store_.push_back(Entry{name, std::move(fd), st.st_dev, st.st_ino});
    }
  }
}

void FdStoreSupervisor::Add(const std::string& name, UniqueFd fd) {
  struct stat st {};
  (void)::fstat(fd.get(), &st);
  store_.push_back(Entry{name, std::move(fd), st.st_dev, st.st_ino});
}

std::vector<const FdStoreSupervisor::Entry*> FdStoreSupervisor::Named(
    const std::string& name) const {
  std::vector<const Entry*> out;
  for (const Entry& e : store_) {
    if (e.name == name) {
      out.push_back(&e);
    }
  }
  return out;
}

Result<pid_t> FdStoreSupervisor::Spawn(const std::vector<std::string>& argv,
                                       const SpawnOptions& options, int stdout_fd) {
  // Everything is built before fork; the child only moves fds and fills in its pid.
  std::map<std::string, std::string> env;
  for (char** e = environ; *e != nullptr; ++e) {
    std::string kv(*e);
    size_t eq = kv.find('=');
    env[kv.substr(0, eq)] = eq == std::string::npos ? "" : kv.substr(eq + 1);
  }
  env["NOTIFY_SOCKET"] = address_;
  if (options.pass_store) {
    std::string names;
    for (const Entry& e : store_) {
      names += (names.empty() ? "" : ":") + e.name;
    }
    env["LISTEN_FDS"] = std::to_string(store_.size());
    env["LISTEN_FDNAMES"] = names;
    env["LISTEN_PID"] = "$PID";
  }
  for (const auto& [k, v] : options.env) {
    env[k] = v;
  }
  for (const auto& k : options.unset) {
    env.erase(k);
  }
  std::vector<std::string> env_strings;
  for (const auto& [k, v] : env) {
    env_strings.push_back(k + "=" + (v == "$PID" ? std::string(16, '\0') : v));
  }
  std::vector<char*> envp;
  char* pid_slot = nullptr;
  for (auto& s : env_strings) {
    envp.push_back(s.data());
    if (s.starts_with("LISTEN_PID=") && s[11] == '\0') {
      pid_slot = s.data() + 11;
    }
  }
  envp.push_back(nullptr);
  std::vector<char*> args;
  for (const auto& a : argv) {
    args.push_back(const_cast<char*>(a.c_str()));
  }
  args.push_back(nullptr);
  std::vector<int> passed;
  if (options.pass_store) {
    for (const Entry& e : store_) {
      passed.push_back(e.fd.get());
    }
  }
  const int high = 3 + static_cast<int>(passed.size()) + 16;

  pid_t pid = ::fork();
  if (pid < 0) {
    return ErrnoError("fork");
  }
  if (pid == 0) {
    if (stdout_fd >= 0 &&
        (::dup2(stdout_fd, STDOUT_FILENO) < 0 || ::dup2(stdout_fd, STDERR_FILENO) < 0)) {
      ::_exit(120);
    }
    for (int& fd : passed) {  // out of the way of 3, 4, ... first
      fd = ::fcntl(fd, F_DUPFD_CLOEXEC, high);
      if (fd < 0) {
        ::_exit(121);
      }
    }
    for (size_t i = 0; i < passed.size(); ++i) {  // dup2 clears FD_CLOEXEC
      if (::dup2(passed[i], 3 + static_cast<int>(i)) < 0) {
        ::_exit(122);
      }
    }
    // Nothing else leaks in, as under systemd (the test's own fds, the runner's).
    ::close_range(3 + static_cast<unsigned>(passed.size()), ~0U, 0);
    if (pid_slot != nullptr) {
      FormatPid(::getpid(), pid_slot);
    }
    ::execve(args[0], args.data(), envp.data());
    ::_exit(127);
  }
  return pid;
}

Result<ChildRun> RunChild(FdStoreSupervisor& supervisor, const std::vector<std::string>& argv,
                          const FdStoreSupervisor::SpawnOptions& options) {
  int pipe_fds[2];
  if (::pipe2(pipe_fds, O_CLOEXEC) < 0) {
    return ErrnoError("pipe2");
  }
  UniqueFd read_end(pipe_fds[0]);
  UniqueFd write_end(pipe_fds[1]);
  pid_t pid = VFIOD_TRY(supervisor.Spawn(argv, options, write_end.get()));
  write_end.reset();
  ChildRun run;
  pollfd p[1] = {{read_end.get(), POLLIN, 0}};
  while (true) {
    VFIOD_TRY(supervisor.Pump(0));
    if (::poll(p, 1, 20) > 0) {
      char buf[4096];
      ssize_t n = ::read(read_end.get(), buf, sizeof(buf));
      if (n <= 0) {
        break;
      }
      run.output.append(buf, static_cast<size_t>(n));
    }
  }
  if (::waitpid(pid, &run.status, 0) < 0) {
    return ErrnoError("waitpid");
  }
  VFIOD_TRY(supervisor.Pump(0));  // what it sent just before exiting
  return run;
}

}  // namespace vfiod::testing
