// Running the vfioctl binary (or another program) as a child process and
// collecting its exit status and output, optionally as another uid and with
// an extra inherited descriptor.
#pragma once

#include <sys/types.h>

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace vfiod::vfioctl_test {

struct RunResult {
  int exit = -1;  ///< exit status; 128 + signal when killed
  std::string out;
  std::string err;

  /// stdout parsed as JSON (discarded when it is not one JSON value).
  [[nodiscard]] nlohmann::json Json() const;
  /// Everything, for failure messages.
  [[nodiscard]] std::string Describe() const;
};

struct RunOptions {
  std::optional<uid_t> uid;      ///< drop to this uid (and gid) first
  int pass_fd = -1;              ///< dup2'd to descriptor 3 in the child
  std::vector<std::string> env;  ///< "NAME=value", added to a minimal environment
};

/// Shorthands for one option.
[[nodiscard]] inline RunOptions AsUid(uid_t uid) {
  RunOptions o;
  o.uid = uid;
  return o;
}
[[nodiscard]] inline RunOptions WithFd3(int fd) {
  RunOptions o;
  o.pass_fd = fd;
  return o;
}
[[nodiscard]] inline RunOptions WithEnv(std::string assignment) {
  RunOptions o;
  o.env.push_back(std::move(assignment));
  return o;
}

/// Runs `program` with `args` and waits for it.
[[nodiscard]] RunResult Run(const std::string& program, const std::vector<std::string>& args,
                            const RunOptions& options = {});

/// Runs vfioctl with `args` (the caller puts --socket etc. in them).
[[nodiscard]] RunResult Vfioctl(const std::vector<std::string>& args,
                                const RunOptions& options = {});

}  // namespace vfiod::vfioctl_test
