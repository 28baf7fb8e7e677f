#include "lifecycle/listen_fds.h"

#include <fcntl.h>
#include <unistd.h>

#include <charconv>
#include <cstdlib>
#include <optional>
#include <string_view>

#include "lifecycle/fd_name.h"

namespace vfiod::lifecycle {

namespace {

constexpr const char* kListenPid = "LISTEN_PID";
constexpr const char* kListenFdsVar = "LISTEN_FDS";
constexpr const char* kListenFdNames = "LISTEN_FDNAMES";

std::optional<std::string> TakeEnv(const char* key) {
  const char* value = std::getenv(key);
  return value != nullptr ? std::optional<std::string>(value) : std::nullopt;
}

/// A whole decimal number in [0, max], or nullopt.
std::optional<long long> ParseCount(std::string_view text, long long max) {
  long long value = -1;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size() || value < 0 ||
      value > max) {
    return std::nullopt;
  }
  return value;
}

/// LISTEN_FDNAMES split at ':' into exactly `count` valid names, or nullopt.
/// Unset: every fd is "unknown".
std::optional<std::vector<std::string>> SplitNames(const std::optional<std::string>& names,
                                                   size_t count) {
  if (!names) {
    return std::vector<std::string>(count, "unknown");
  }
  std::vector<std::string> out;
  if (count == 0) {
    return names->empty() ? std::optional(out) : std::nullopt;
  }
  std::string_view rest = *names;
  while (true) {
    size_t colon = rest.find(':');
    std::string_view name = rest.substr(0, colon);
    if (!IsValidFdName(name)) {
      return std::nullopt;
    }
    out.emplace_back(name);
    if (colon == std::string_view::npos) {
      break;
    }
    rest.remove_prefix(colon + 1);
  }
  return out.size() == count ? std::optional(std::move(out)) : std::nullopt;
}

/// Owns fds 3 .. 3+count-1 (closing them when dropped), setting FD_CLOEXEC.
/// EBADF when one is not open; the others are closed on that error.
Result<std::vector<UniqueFd>> AdoptFds(int count) {
  std::vector<UniqueFd> fds;
  fds.reserve(static_cast<size_t>(count));
  int missing = -1;
  for (int fd = kListenFdsStart; fd < kListenFdsStart + count; ++fd) {
    int flags = ::fcntl(fd, F_GETFD);
    if (flags < 0) {
      missing = missing < 0 ? fd : missing;
      continue;  // not ours to close: it is not open
    }
    fds.emplace_back(fd);
    if ((flags & FD_CLOEXEC) == 0 && ::fcntl(fd, F_SETFD, flags | FD_CLOEXEC) < 0) {
      return ErrnoError("fcntl F_SETFD " + std::to_string(fd));
    }
  }
  if (missing >= 0) {
    return Fail(EBADF, "LISTEN_FDS", "fd " + std::to_string(missing) + " is not open");
  }
  return fds;
}

}  // namespace

Result<std::vector<NamedFd>> ListenFds() {
  const std::optional<std::string> pid = TakeEnv(kListenPid);
  const std::optional<std::string> count_text = TakeEnv(kListenFdsVar);
  const std::optional<std::string> names_text = TakeEnv(kListenFdNames);
  ::unsetenv(kListenPid);
  ::unsetenv(kListenFdsVar);
  ::unsetenv(kListenFdNames);
  if (!pid) {
    return std::vector<NamedFd>{};
  }
  auto pid_value = ParseCount(*pid, INT32_MAX);
  if (!pid_value || *pid_value == 0) {
    return Fail(EINVAL, "LISTEN_PID", "not a process id: '" + *pid + "'");
  }
  if (*pid_value != ::getpid()) {
    return std::vector<NamedFd>{};  // meant for another process: leave its fds alone
  }
  auto count = count_text ? ParseCount(*count_text, kMaxListenFds) : std::nullopt;
  if (!count) {
    return Fail(EINVAL, "LISTEN_FDS", "missing, or not a count in [0, 2^20]");
  }
  auto fds = VFIOD_TRY(AdoptFds(static_cast<int>(*count)));
  auto names = SplitNames(names_text, fds.size());
  if (!names) {
    return Fail(EINVAL, "LISTEN_FDNAMES",
                "not " + std::to_string(fds.size()) + " valid names separated by ':'");
  }
  std::vector<NamedFd> out;
  out.reserve(fds.size());
  for (size_t i = 0; i < fds.size(); ++i) {
    out.push_back(NamedFd{std::move((*names)[i]), std::move(fds[i])});
  }
  return out;
}

}  // namespace vfiod::lifecycle
