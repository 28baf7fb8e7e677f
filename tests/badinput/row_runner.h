// Sending one catalogue row to the daemon: the fixture steps its setup names
// (made with the client library on the row's own connection), the bad input
// itself as raw bytes (with the fixture's fds) on that same socket, and the
// replies read back from it. Runs in the test process or in a forked child
// that dropped to another uid (setup "nobody+...").
#pragma once

#include <fcntl.h>
#include <linux/memfd.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "catalogue.h"
#include "client/vfiod_client.h"
#include "proto/fd_passing.h"
#include "proto/framing.h"

namespace vfiod::itest {

using nlohmann::json;

/// What a fixture made: placeholder values ("$container" -> "7"), the fds the
/// bad input carries (fd 0, 1, ... in the message), the containers to destroy,
/// and how the input is to be sent and its replies read.
struct Fixture {
  std::map<std::string, std::string> vars;
  std::vector<UniqueFd> fds;
  std::vector<uint64_t> containers;
  std::string socket;                ///< the daemon's socket
  bool probe = true;                 ///< false: no ping follows the input
  bool read = true;                  ///< false: the replies are never read
  bool fresh_connection = false;     ///< the input goes on a new connection
  std::vector<client::Client> held;  ///< connections held open for the row
};

/// What came back: the replies in the catalogue's notation, the first error's
/// data.detail, and anything else that went wrong ("" when nothing did).
struct RowOutcome {
  std::string reply;
  std::string detail;
  std::string problems;
};

inline constexpr const char* kProbe = R"({"jsonrpc":"2.0","id":"probe","method":"ping"})";
inline constexpr uint64_t kFixtureBytes = 1 << 20;

inline UniqueFd Memfd(unsigned flags, uint64_t size) {
  UniqueFd fd(static_cast<int>(::syscall(SYS_memfd_create, "badinput", MFD_CLOEXEC | flags)));
  if (fd.valid() && ::ftruncate(fd.get(), static_cast<off_t>(size)) != 0) {
    return UniqueFd();
  }
  return fd;
}

/// The fixture steps a setup may chain with '+'. Each returns "" or why it failed.
using Step = std::function<std::string(client::Client&, Fixture&)>;

inline std::string Made(Fixture& fx, const client::CallResult& r, const char* field,
                        const char* var) {
  if (!r) {
    return std::string(var) + ": " + r.error().Describe();
  }
  fx.vars[var] = r->result[field].dump();
  return "";
}

inline std::string MakeContainer(client::Client& c, Fixture& fx, const json& params) {
  auto r = c.Call("container.create", params);
  if (r) {
    fx.containers.push_back(r->result["container"].get<uint64_t>());
  }
  return Made(fx, r, "container", "container");
}

inline std::string AddFd(Fixture& fx, UniqueFd fd) {
  if (!fd.valid()) {
    return "fixture fd: " + std::string(std::strerror(errno));
  }
  fx.fds.push_back(std::move(fd));
  return "";
}

inline std::string Register(client::Client& c, Fixture& fx) {
  UniqueFd memfd = Memfd(MFD_ALLOW_SEALING, kFixtureBytes);
  const int fds[] = {memfd.get()};
  return Made(fx, c.Call("dma.register", {{"fd", {{"fd", 0}}}}, fds), "region", "region");
}

inline const std::map<std::string, Step>& Steps() {
  static const std::map<std::string, Step> kSteps = {
      {"none", [](client::Client&, Fixture&) { return std::string(); }},
      // Marker: the row runs as uid 65534 (the harness handles it).
      {"nobody", [](client::Client&, Fixture&) { return std::string(); }},
      // Marker: the row runs on the strict daemon (short timeouts, a small
      // per-user share, a small pinned-bytes cap; the harness handles it).
      {"strict", [](client::Client&, Fixture&) { return std::string(); }},
      // Marker: the row runs on the store daemon (started as systemd does,
      // so its fd store is in use, with a small limits.max_stored_fds).
      {"store", [](client::Client&, Fixture&) { return std::string(); }},
      // No probe after the input: the replies are read until the daemon
      // closes (for inputs a following line would change, or end).
      {"stall",
       [](client::Client&, Fixture& fx) {
         fx.probe = false;
         return std::string();
       }},
      // The input is sent and its replies never read: the test waits (15 s
      // at most) for the daemon to close the connection.
      {"noread",
       [](client::Client&, Fixture& fx) {
         fx.probe = false;
         fx.read = false;
         return std::string();
       }},
      // The user's share of connections (the "$share" var, its row connection
      // included) held open, and the input sent on one connection more.
      {"share_full",
       [](client::Client&, Fixture& fx) {
         const int share = std::stoi(fx.vars.at("share"));
         for (int i = 1; i < share; ++i) {
           auto c = client::Client::Connect(fx.socket);
           if (!c || !c->Call("ping")) {
             return "connection " + std::to_string(i + 1) + " of the share refused";
           }
           fx.held.push_back(std::move(*c));
         }
         fx.fresh_connection = true;
         return std::string();
       }},
      {"container",
       [](client::Client& c, Fixture& fx) {
         return MakeContainer(c, fx, {{"devices", {"0000:00:03.0"}}});
       }},
      {"container_bar",
       [](client::Client& c, Fixture& fx) {
         return MakeContainer(c, fx, {{"devices", {"0000:00:03.0", "0000:00:04.0"}}});
       }},
      {"named",
       [](client::Client& c, Fixture& fx) {
         return MakeContainer(c, fx, {{"devices", {"0000:00:03.0"}}, {"name", "badinput"}});
       }},
      // $container shared with 64 users (5000-5063) and 64 groups (6000-6063).
      {"share_list_full",
       [](client::Client& c, Fixture& fx) {
         json users = json::array();
         json groups = json::array();
         for (int i = 0; i < 64; ++i) {
           users.push_back(5000 + i);
           groups.push_back(6000 + i);
         }
         auto r = c.Call("container.share", {{"container", json::parse(fx.vars["container"])},
                                             {"users", users},
                                             {"groups", groups}});
         return r ? "" : "share: " + r.error().Describe();
       }},
      {"mapping",
       [](client::Client& c, Fixture& fx) {
         auto r = c.Call("dma.alloc", {{"container", json::parse(fx.vars["container"])},
                                       {"size", 1 << 20},
                                       {"backing", "4k"}});
         if (r) {
           fx.vars["iova"] = r->result["iova"].dump();
         }
         return Made(fx, r, "mapping", "mapping");
       }},
      {"free",
       [](client::Client& c, Fixture& fx) {
         auto r = c.Call("dma.free", {{"mapping", json::parse(fx.vars["mapping"])}});
         return r ? "" : "free: " + r.error().Describe();
       }},
      {"destroy",
       [](client::Client& c, Fixture& fx) {
         auto r = c.Call("container.destroy", {{"container", json::parse(fx.vars["container"])}});
         return r ? "" : "destroy: " + r.error().Describe();
       }},
      {"region", [](client::Client& c, Fixture& fx) { return Register(c, fx); }},
      {"unregister",
       [](client::Client& c, Fixture& fx) {
         auto r = c.Call("dma.unregister", {{"region", json::parse(fx.vars["region"])}});
         return r ? "" : "unregister: " + r.error().Describe();
       }},
      // fds the bad input carries.
      {"memfd", [](client::Client&,
                   Fixture& fx) { return AddFd(fx, Memfd(MFD_ALLOW_SEALING, kFixtureBytes)); }},
      {"memfd_small",
       [](client::Client&, Fixture& fx) { return AddFd(fx, Memfd(MFD_ALLOW_SEALING, 4096)); }},
      {"memfd_empty",
       [](client::Client&, Fixture& fx) { return AddFd(fx, Memfd(MFD_ALLOW_SEALING, 0)); }},
      // Without MFD_ALLOW_SEALING the kernel sets F_SEAL_SEAL: no seal can be added.
      {"memfd_unsealable",
       [](client::Client&, Fixture& fx) { return AddFd(fx, Memfd(0, kFixtureBytes)); }},
      // Sealing allowed, then locked (F_SEAL_SEAL) before F_SEAL_SHRINK was added.
      {"memfd_seal_locked",
       [](client::Client&, Fixture& fx) {
         UniqueFd fd = Memfd(MFD_ALLOW_SEALING, kFixtureBytes);
         (void)::fcntl(fd.get(), F_ADD_SEALS, F_SEAL_SEAL);
         return AddFd(fx, std::move(fd));
       }},
      // Shrink-sealed and locked: acceptable as is (vfiod needs nothing more).
      {"memfd_sealed",
       [](client::Client&, Fixture& fx) {
         UniqueFd fd = Memfd(MFD_ALLOW_SEALING, kFixtureBytes);
         (void)::fcntl(fd.get(), F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_SEAL);
         return AddFd(fx, std::move(fd));
       }},
      {"memfd_readonly",
       [](client::Client&, Fixture& fx) {
         UniqueFd fd = Memfd(MFD_ALLOW_SEALING, kFixtureBytes);
         std::string path = "/proc/self/fd/" + std::to_string(fd.get());
         return AddFd(fx, UniqueFd(::open(path.c_str(), O_RDONLY | O_CLOEXEC)));
       }},
      {"pipe",
       [](client::Client&, Fixture& fx) {
         int p[2];
         if (::pipe2(p, O_CLOEXEC) != 0) {
           return std::string("pipe");
         }
         UniqueFd w(p[1]);
         return AddFd(fx, UniqueFd(p[0]));
       }},
      {"socket",
       [](client::Client&, Fixture& fx) {
         int s[2];
         if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, s) != 0) {
           return std::string("socketpair");
         }
         UniqueFd other(s[1]);
         return AddFd(fx, UniqueFd(s[0]));
       }},
      {"eventfd",
       [](client::Client&, Fixture& fx) { return AddFd(fx, UniqueFd(::eventfd(0, EFD_CLOEXEC))); }},
      {"dir",
       [](client::Client&, Fixture& fx) {
         return AddFd(fx, UniqueFd(::open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC)));
       }},
      {"devnull",
       [](client::Client&, Fixture& fx) {
         return AddFd(fx, UniqueFd(::open("/dev/null", O_RDWR | O_CLOEXEC)));
       }},
      // A regular file that is not shmem (no seals): an unlinked file in /var/tmp.
      {"tmpfile",
       [](client::Client&, Fixture& fx) {
         UniqueFd fd(::open("/var/tmp", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600));
         if (fd.valid() && ::ftruncate(fd.get(), kFixtureBytes) != 0) {
           fd.reset();
         }
         return AddFd(fx, std::move(fd));
       }},
      // One fd more than a message may carry (wire::kMaxFdsPerMessage).
      {"fds17",
       [](client::Client&, Fixture& fx) {
         std::string failed;
         for (size_t i = 0; i <= wire::kMaxFdsPerMessage && failed.empty(); ++i) {
           failed = AddFd(fx, UniqueFd(::open("/dev/null", O_RDONLY | O_CLOEXEC)));
         }
         return failed;
       }},
  };
  return kSteps;
}

inline std::vector<std::string> SetupSteps(const std::string& setup) {
  std::vector<std::string> steps;
  std::stringstream in(setup);
  for (std::string step; std::getline(in, step, '+');) {
    steps.push_back(step);
  }
  return steps;
}

/// `text` with the catalogue's macros expanded: "$cat(N,text)" is N copies of
/// text, "$rep(N,text)" N copies joined by ','; text holds no ')'.
inline std::string ExpandMacros(std::string text) {
  for (size_t at; (at = text.find("$cat(")) != std::string::npos ||
                  (at = text.find("$rep(")) != std::string::npos;) {
    const bool joined = text.compare(at, 5, "$rep(") == 0;
    size_t comma = text.find(',', at);
    size_t end = text.find(')', comma);
    if (comma == std::string::npos || end == std::string::npos) {
      break;
    }
    const size_t n = std::stoul(text.substr(at + 5, comma - at - 5));
    const std::string unit = text.substr(comma + 1, end - comma - 1);
    std::string copies;
    for (size_t i = 0; i < n; ++i) {
      copies += (joined && i > 0 ? "," : "") + unit;
    }
    text.replace(at, end + 1 - at, copies);
  }
  return text;
}

/// `text` with every "$name" (quoted or not) replaced by its value, then the
/// macros expanded.
inline std::string Substitute(std::string text, const std::map<std::string, std::string>& vars) {
  for (auto it = vars.rbegin(); it != vars.rend(); ++it) {
    for (const std::string& key : {"\"$" + it->first + "\"", "$" + it->first}) {
      for (size_t at; (at = text.find(key)) != std::string::npos;) {
        text.replace(at, key.size(), it->second);
      }
    }
  }
  return ExpandMacros(std::move(text));
}

/// A raw row's bytes: "\\xHH" (a backslash, x, two hex digits, after JSON
/// decoding) is the byte 0xHH, for bytes JSON strings cannot carry (invalid UTF-8).
inline std::string DecodeBytes(const std::string& text) {
  std::string out;
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '\\' && i + 3 < text.size() && text[i + 1] == 'x' &&
        std::isxdigit(static_cast<unsigned char>(text[i + 2])) != 0 &&
        std::isxdigit(static_cast<unsigned char>(text[i + 3])) != 0) {
      out += static_cast<char>(std::stoi(text.substr(i + 2, 2), nullptr, 16));
      i += 3;
    } else {
      out += text[i];
    }
  }
  return out;
}

/// One sendmsg() of all of `bytes` (looping on short writes) with `fds` on the
/// first chunk; any number of fds (the daemon must cope with too many).
inline bool SendRaw(int sock, const std::string& bytes, const std::vector<UniqueFd>& fds) {
  size_t sent = 0;
  std::vector<char> control(CMSG_SPACE(sizeof(int) * fds.size()));
  while (sent < bytes.size()) {
    iovec iov{const_cast<char*>(bytes.data() + sent), bytes.size() - sent};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    if (sent == 0 && !fds.empty()) {
      msg.msg_control = control.data();
      msg.msg_controllen = control.size();
      cmsghdr* cm = CMSG_FIRSTHDR(&msg);
      if (cm == nullptr) {
        return false;
      }
      cm->cmsg_level = SOL_SOCKET;
      cm->cmsg_type = SCM_RIGHTS;
      cm->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
      for (size_t i = 0; i < fds.size(); ++i) {
        int fd = fds[i].get();
        std::memcpy(CMSG_DATA(cm) + i * sizeof(int), &fd, sizeof fd);
      }
    }
    ssize_t n = ::sendmsg(sock, &msg, MSG_NOSIGNAL);
    if (n <= 0) {
      return false;
    }
    sent += static_cast<size_t>(n);
  }
  return true;
}

/// The catalogue's notation of one reply line: its code (0 for a result), a
/// batch as "[c1,c2]", "garbage" for anything else.
inline std::string ReplyToken(const json& reply) {
  auto code = [](const json& r) {
    if (r.is_object() && r.contains("result")) {
      return std::string("0");
    }
    if (r.is_object() && r.contains("error") && r["error"].contains("code")) {
      return r["error"]["code"].dump();
    }
    return std::string("garbage");
  };
  if (!reply.is_array()) {
    return code(reply);
  }
  std::string out = "[";
  for (const auto& r : reply) {
    out += (out.size() > 1 ? "," : "") + code(r);
  }
  return out + "]";
}

/// The detail of the first error in `reply` (a response or a batch).
inline std::string FirstDetail(const json& reply) {
  for (const json& r : reply.is_array() ? reply : json::array({reply})) {
    if (r.is_object() && r.contains("error")) {
      const json& e = r["error"];
      const json* detail =
          e.contains("data") && e["data"].is_object() && e["data"].contains("detail")
              ? &e["data"]["detail"]
              : &e["message"];
      return detail->is_string() ? detail->get_ref<const std::string&>() : detail->dump();
    }
  }
  return "";
}

/// Reads replies on `sock` until the probe is answered and `want` other
/// replies arrived (without a probe: until the daemon closes), the peer
/// closes, or 10 s pass. Returns the other replies; `closed` tells whether
/// the daemon closed the connection.
inline std::vector<json> ReadReplies(int sock, size_t want, bool probe, bool& closed) {
  wire::LineFramer framer(64 << 20);
  std::vector<json> replies;
  bool probed = false;
  closed = false;
  std::vector<char> buf(1 << 16);
  while (!(probe && probed && replies.size() >= want)) {
    pollfd p{sock, POLLIN, 0};
    if (::poll(&p, 1, 10'000) <= 0) {
      break;
    }
    auto got = wire::RecvWithFds(sock, buf);
    if (!got || got->bytes == 0) {
      closed = true;
      break;
    }
    framer.Feed(std::string_view(buf.data(), got->bytes), std::move(got->fds), got->fds_truncated);
    while (framer.has_frame()) {
      json j = json::parse(framer.Pop().line, nullptr, false);  // reply fds close here
      if (j.is_object() && j.value("id", json()) == "probe") {
        probed = true;
      } else {
        replies.push_back(std::move(j));
      }
    }
  }
  return replies;
}

/// Whether the daemon closed `sock` within `timeout`, seen without reading
/// (POLLRDHUP shows while replies sit unread).
inline bool ClosedWithoutReading(int sock, std::chrono::milliseconds timeout) {
  pollfd p{sock, POLLRDHUP, 0};
  return ::poll(&p, 1, static_cast<int>(timeout.count())) == 1 && (p.revents & POLLRDHUP) != 0;
}

/// How many reply lines the catalogue's `reply` expects ("none" is 0, "close" is no line).
inline size_t ExpectedLines(const std::string& reply) {
  size_t n = 0;
  std::stringstream in(reply);
  for (std::string token; in >> token;) {
    n += token != "none" && token != "close" ? 1 : 0;
  }
  return n;
}

/// Status figures that must not move, and the caller's regions.
inline json Snapshot(client::Client& c) {
  auto s = c.Call("status");
  auto regions = c.Call("dma.regions");
  if (!s || !regions) {
    return json("status or dma.regions failed");
  }
  return {{"containers", s->result["containers"]},
          {"mappings", s->result["mappings"]},
          {"locked_bytes", s->result["locked_bytes"]},
          {"dma_entries", s->result["dma_entries"]},
          {"regions", regions->result.size()}};
}

/// The bytes of the bad input: a request line with id "row" for method rows,
/// the decoded JSON string for raw rows.
inline std::optional<std::string> RowBytes(const CatalogueRow& row, const Fixture& fx) {
  json input = json::parse(Substitute(row.input, fx.vars), nullptr, false);
  if (input.is_discarded()) {
    return std::nullopt;
  }
  if (row.method == "raw") {
    return input.is_string() ? std::optional(DecodeBytes(input.get<std::string>())) : std::nullopt;
  }
  json request = {{"jsonrpc", "2.0"}, {"id", "row"}, {"method", row.method}, {"params", input}};
  return request.dump() + "\n";
}

/// Sends `row` to the daemon at `socket`: fixture, bad input, replies, the
/// status of the row's own session before and after, teardown.
inline RowOutcome RunRow(const std::string& socket, const CatalogueRow& row,
                         const std::map<std::string, std::string>& shared_vars) {
  RowOutcome out;
  auto c = client::Client::Connect(socket);
  if (!c) {
    out.problems = "connect: " + c.error().message();
    return out;
  }
  Fixture fx;
  fx.vars = shared_vars;
  fx.socket = socket;
  for (const std::string& step : SetupSteps(row.setup)) {
    auto it = Steps().find(step);
    std::string failed = it == Steps().end() ? "unknown setup step " + step : it->second(*c, fx);
    if (!failed.empty()) {
      out.problems = "setup: " + failed;
      return out;
    }
  }
  json before = Snapshot(*c);
  auto bytes = RowBytes(row, fx);
  if (!bytes) {
    out.problems = "input is not valid JSON (or not a string for a raw row)";
    return out;
  }
  std::optional<client::Client> fresh;
  if (fx.fresh_connection) {
    auto f = client::Client::Connect(socket);
    if (!f) {
      out.problems = "connect: " + f.error().message();
      return out;
    }
    fresh.emplace(std::move(*f));
  }
  const int sock = fresh ? fresh->fd() : c->fd();
  // The probe goes after the input; the replies are collected whatever their order.
  bool sent =
      SendRaw(sock, *bytes, fx.fds) && (!fx.probe || SendRaw(sock, std::string(kProbe) + "\n", {}));
  bool closed = false;
  std::vector<json> replies;
  if (fx.read) {
    replies = ReadReplies(sock, ExpectedLines(row.reply), fx.probe, closed);
  } else {
    closed = ClosedWithoutReading(sock, std::chrono::seconds(15));
  }
  for (const json& r : replies) {
    out.reply += (out.reply.empty() ? "" : " ") + ReplyToken(r);
  }
  if (replies.empty()) {
    out.reply = fx.read ? "none" : "";  // unread: only whether it closed counts
  }
  if (closed) {
    out.reply += out.reply.empty() ? "close" : " close";
  }
  out.detail = replies.empty() ? "" : FirstDetail(replies.front());
  if (!sent && !closed) {
    out.problems += "send failed; ";
  }
  if (!closed) {
    json after = Snapshot(*c);
    if (after != before) {
      out.problems +=
          "the session's figures moved: " + before.dump() + " -> " + after.dump() + "; ";
    }
  }
  // Teardown: named containers outlive the session, so every one goes explicitly.
  auto admin = client::Client::Connect(socket);
  for (uint64_t id : fx.containers) {
    if (admin) {
      (void)admin->Call("container.destroy", {{"container", id}});
    }
  }
  return out;
}

}  // namespace vfiod::itest
