#include "run_vfioctl.h"

#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>

namespace vfiod::vfioctl_test {

nlohmann::json RunResult::Json() const { return nlohmann::json::parse(out, nullptr, false); }

std::string RunResult::Describe() const {
  return "exit " + std::to_string(exit) + "\n--- stdout\n" + out + "--- stderr\n" + err;
}

namespace {

[[noreturn]] void ExecChild(const std::string& program, const std::vector<std::string>& args,
                            const RunOptions& o, int out_fd, int err_fd) {
  ::dup2(out_fd, 1);
  ::dup2(err_fd, 2);
  if (o.pass_fd == 3) {
    ::fcntl(3, F_SETFD, 0);  // already in place: only inherit it
  } else if (o.pass_fd >= 0) {
    ::dup2(o.pass_fd, 3);  // dup2 clears FD_CLOEXEC on the new descriptor
  }
  if (o.uid && (::setgroups(0, nullptr) != 0 || ::setresgid(*o.uid, *o.uid, *o.uid) != 0 ||
                ::setresuid(*o.uid, *o.uid, *o.uid) != 0)) {
    ::_exit(126);
  }
  std::vector<std::string> env = {"PATH=/usr/bin:/bin", "LANG=C"};
  env.insert(env.end(), o.env.begin(), o.env.end());
  std::vector<char*> argv{const_cast<char*>(program.c_str())};
  for (const auto& a : args) {
    argv.push_back(const_cast<char*>(a.c_str()));
  }
  argv.push_back(nullptr);
  std::vector<char*> envp;
  for (auto& e : env) {
    envp.push_back(e.data());
  }
  envp.push_back(nullptr);
  ::execve(program.c_str(), argv.data(), envp.data());
  ::_exit(127);
}

// Reads both pipes until both close (so a chatty child never blocks).
void Drain(int out_fd, int err_fd, std::string& out, std::string& err) {
  pollfd fds[2] = {{out_fd, POLLIN, 0}, {err_fd, POLLIN, 0}};
  std::string* sinks[2] = {&out, &err};
  int open_count = 2;
  char buf[4096];
  while (open_count > 0) {
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) {
        continue;
      }
      return;
    }
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || fds[i].revents == 0) {
        continue;
      }
      ssize_t n = ::read(fds[i].fd, buf, sizeof(buf));
      if (n > 0) {
        sinks[i]->append(buf, static_cast<size_t>(n));
      } else if (n == 0 || errno != EINTR) {
        fds[i].fd = -1;
        --open_count;
      }
    }
  }
}

}  // namespace

RunResult Run(const std::string& program, const std::vector<std::string>& args,
              const RunOptions& options) {
  RunResult r;
  int out_pipe[2];
  int err_pipe[2];
  if (::pipe2(out_pipe, O_CLOEXEC) != 0 || ::pipe2(err_pipe, O_CLOEXEC) != 0) {
    r.err = std::string("pipe: ") + std::strerror(errno);
    return r;
  }
  pid_t pid = ::fork();
  if (pid == 0) {
    ExecChild(program, args, options, out_pipe[1], err_pipe[1]);
  }
  ::close(out_pipe[1]);
  ::close(err_pipe[1]);
  Drain(out_pipe[0], err_pipe[0], r.out, r.err);
  ::close(out_pipe[0]);
  ::close(err_pipe[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  r.exit = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return r;
}

RunResult Vfioctl(const std::vector<std::string>& args, const RunOptions& options) {
  return Run(VFIOCTL_BINARY, args, options);
}

}  // namespace vfiod::vfioctl_test
