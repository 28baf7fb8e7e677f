#include "rpc/peer_credentials.h"

#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <fstream>
#include <sstream>
#include <string>

namespace vfiod::rpc {

namespace {

void SortUnique(std::vector<gid_t>& groups) {
  std::sort(groups.begin(), groups.end());
  groups.erase(std::unique(groups.begin(), groups.end()), groups.end());
}

// SO_PEERGROUPS (Linux 4.13+). ENOPROTOOPT means the kernel lacks it.
Result<std::vector<gid_t>> ReadSocketGroups(int sock) {
  std::vector<gid_t> groups(64);
  for (;;) {
    socklen_t len = static_cast<socklen_t>(groups.size() * sizeof(gid_t));
    if (::getsockopt(sock, SOL_SOCKET, SO_PEERGROUPS, groups.data(), &len) == 0) {
      groups.resize(len / sizeof(gid_t));
      return groups;
    }
    if (errno != ERANGE) {
      return ErrnoError("getsockopt SO_PEERGROUPS");
    }
    groups.resize(len / sizeof(gid_t) + 1);  // len now holds the size needed
  }
}

}  // namespace

Result<std::vector<gid_t>> ParseStatusGroups(std::string_view status) {
  constexpr std::string_view kKey = "\nGroups:";
  std::size_t at = status.starts_with(kKey.substr(1)) ? 0 : status.find(kKey);
  if (at == std::string_view::npos) {
    return Fail(EBADMSG, "parse /proc status", "no Groups: line");
  }
  at = status.find(':', at) + 1;
  std::string_view line = status.substr(at, status.find('\n', at) - at);
  std::vector<gid_t> groups;
  std::size_t i = 0;
  while (i < line.size()) {
    if (line[i] == ' ' || line[i] == '\t') {
      ++i;
      continue;
    }
    gid_t gid = 0;
    auto [end, ec] = std::from_chars(line.data() + i, line.data() + line.size(), gid);
    if (ec != std::errc() || (end != line.data() + line.size() && *end != ' ' && *end != '\t')) {
      return Fail(EBADMSG, "parse /proc status", "bad gid in Groups: line");
    }
    groups.push_back(gid);
    i = static_cast<std::size_t>(end - line.data());
  }
  SortUnique(groups);
  return groups;
}

Result<std::vector<gid_t>> ReadProcGroups(pid_t pid) {
  std::string path = "/proc/" + std::to_string(pid) + "/status";
  std::ifstream in(path);
  if (!in) {
    return ErrnoError("open " + path);
  }
  std::ostringstream text;
  text << in.rdbuf();
  return ParseStatusGroups(text.str());
}

Result<PeerCredentials> ReadPeerCredentials(int sock) {
  ucred cred{};
  socklen_t len = sizeof(cred);
  if (::getsockopt(sock, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) {
    return ErrnoError("getsockopt SO_PEERCRED");
  }
  PeerCredentials peer{cred.uid, cred.gid, cred.pid, {}};
  auto groups = ReadSocketGroups(sock);
  if (!groups && groups.error().code == ENOPROTOOPT) {
    groups = ReadProcGroups(cred.pid);
  }
  if (!groups) {
    return std::unexpected(std::move(groups).error());
  }
  peer.groups = std::move(*groups);
  SortUnique(peer.groups);
  return peer;
}

}  // namespace vfiod::rpc
