// libFuzzer target: one client session against the whole in-process daemon on
// the model kernel (rpc_fuzz_daemon.h): framing, fd passing, JSON-RPC parsing,
// dispatch and every method. The input is the client's byte stream, split
// into writes that may carry fds (rpc_fuzz_input.h). After the writes the
// client shuts down its write side and reads until the daemon closes.
//
// Invariants checked after every input:
//  - the daemon closes the connection (within 20 s) after answering every
//    line it owes a reply (exactly; at most that plus the kFrameTooLarge
//    reply when a line was too long), each reply a well-formed response;
//  - the session's close hook runs, after which only named containers
//    remain; once they are destroyed, status counts nothing, and (a state
//    record later) nothing is left in the fd store or charged to its budget;
//  - the process holds exactly the fds it held before the session.
#include <dirent.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "fuzz_check.h"
#include "proto/errors.h"
#include "proto/fd_passing.h"
#include "proto/framing.h"
#include "rpc_fuzz_daemon.h"
#include "rpc_fuzz_input.h"

namespace vfiod::fuzz {
namespace {

using nlohmann::json;
// Long enough for a loaded machine (the daemon does everything in milliseconds).
constexpr int kTimeoutMs = 20000;
// VFIOD_FUZZ_LOG=1: the daemon logs and the replies are printed (debugging an input).
const bool kTrace = std::getenv("VFIOD_FUZZ_LOG") != nullptr;

FuzzDaemon& Daemon();

// On a hang: the state of every connection the daemon serves and every
// thread's stack (if gdb is there: tried again while LeakSanitizer's tracer
// holds the process), then the invariant fails.
void CheckNoHang(bool answered, const char* what) {
  if (answered) {
    return;
  }
  (void)std::fprintf(stderr, "no answer from the daemon for %d ms: %s\n", kTimeoutMs, what);
  for (const std::string& line : Daemon().DescribeConnections()) {
    (void)std::fprintf(stderr, "  %s\n", line.c_str());
  }
  const std::string files = "ls -l /proc/" + std::to_string(::getpid()) +
                            "/fd >&2; ss -xpn | grep -F 'pid=" + std::to_string(::getpid()) +
                            ",' >&2";
  (void)std::system(files.c_str());
  const std::string gdb = "for i in 1 2 3 4 5; do gdb -batch -q -ex 'thread apply all bt' -p " +
                          std::to_string(::getpid()) +
                          " >/tmp/vfiod-fuzz-gdb.txt 2>&1; grep -q 'not permitted' "
                          "/tmp/vfiod-fuzz-gdb.txt || break; sleep 1; done; "
                          "grep -E '^#|^Thread' /tmp/vfiod-fuzz-gdb.txt >&2";
  (void)std::system(gdb.c_str());
  FUZZ_CHECK(answered);
}

// The process's open fds and what each refers to (the reading's own
// directory fd included, the same every time).
using FdTable = std::map<int, std::string>;
FdTable OpenFds() {
  DIR* dir = ::opendir("/proc/self/fd");
  FUZZ_CHECK(dir != nullptr);
  FdTable fds;
  while (const dirent* entry = ::readdir(dir)) {
    if (entry->d_name[0] == '.') {
      continue;
    }
    std::error_code ec;
    const std::filesystem::path link = std::filesystem::path("/proc/self/fd") / entry->d_name;
    fds.emplace(std::atoi(entry->d_name), std::filesystem::read_symlink(link, ec).string());
  }
  ::closedir(dir);
  return fds;
}

// OpenFds() once two reads 50 ms apart agree (at most 2 s).
FdTable SteadyOpenFds() {
  FdTable fds = OpenFds();
  for (int i = 0; i < 40; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    FdTable again = OpenFds();
    if (again == fds) {
      break;
    }
    fds = std::move(again);
  }
  return fds;
}

// The fds in `after` but not `before` (leaked) and the reverse (closed by
// someone else), one per line, for the report of a failed fd check.
void PrintFdChanges(const FdTable& before, const FdTable& after) {
  for (const auto& [fd, target] : after) {
    auto old = before.find(fd);
    if (old == before.end() || old->second != target) {
      (void)std::fprintf(stderr, "fd %d open after the session: %s\n", fd, target.c_str());
    }
  }
  for (const auto& [fd, target] : before) {
    auto now = after.find(fd);
    if (now == after.end() || now->second != target) {
      (void)std::fprintf(stderr, "fd %d gone after the session: %s\n", fd, target.c_str());
    }
  }
}

// One sendmsg of `bytes` with `fds` as SCM_RIGHTS (any count, unlike
// wire::SendWithFds, so the daemon also sees truncated control data).
ssize_t SendWithFds(int sock, std::string_view bytes, const std::vector<UniqueFd>& fds) {
  iovec iov{const_cast<char*>(bytes.data()), bytes.size()};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  std::vector<char> control(CMSG_SPACE(sizeof(int) * fds.size()));
  if (!fds.empty()) {
    msg.msg_control = control.data();
    msg.msg_controllen = control.size();
    cmsghdr* cmsg = CMSG_FIRSTHDR(&msg);
    cmsg->cmsg_level = SOL_SOCKET;
    cmsg->cmsg_type = SCM_RIGHTS;
    cmsg->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
    for (std::size_t i = 0; i < fds.size(); ++i) {
      const int fd = fds[i].get();
      std::memcpy(CMSG_DATA(cmsg) + i * sizeof(int), &fd, sizeof(int));
    }
  }
  return ::sendmsg(sock, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
}

bool IsResponse(const json& r) {
  if (!r.is_object() || !r.contains("id") || r.contains("result") == r.contains("error")) {
    return false;
  }
  auto version = r.find("jsonrpc");
  if (version == r.end() || *version != "2.0") {
    return false;
  }
  auto error = r.find("error");
  return error == r.end() || (error->is_object() && error->contains("message") &&
                              error->contains("code") && error->at("code").is_number_integer());
}

// The client's read buffer, one for every session (they run one at a time):
// a fresh one per session cost more than some sessions (zeroing, page faults).
std::span<char> ReadBuffer() {
  static std::vector<char> buffer(std::size_t{64} * 1024);
  return buffer;
}

// The client side of one session: what it read back.
class Client {
 public:
  explicit Client(UniqueFd fd) : fd_(std::move(fd)) {}

  // Sends every write; false once the daemon closed (it may, after an
  // overlong line), which ends the writing.
  bool Send(const ClientWrite& write) {
    std::string_view rest = write.bytes;
    std::vector<UniqueFd> fds = MakeFds(write.fds);
    while (!rest.empty()) {
      const ssize_t sent = SendWithFds(fd_.get(), rest, fds);
      if (sent < 0 && errno == EAGAIN) {
        CheckNoHang(Wait(POLLOUT), "waiting to write");
        continue;
      }
      if (sent < 0) {
        FUZZ_CHECK(errno == EPIPE || errno == ECONNRESET);
        return false;
      }
      rest.remove_prefix(static_cast<std::size_t>(sent));
      fds.clear();  // they went with the first byte
    }
    return true;
  }

  // Half-closes and reads until the daemon closes; false on timeout.
  bool Finish() {
    // Fails if the fd is no longer this socket (closed by someone else and
    // its number reused), which would leave poll waiting on another file.
    if (::shutdown(fd_.get(), SHUT_WR) != 0 && errno != ENOTCONN) {
      (void)std::fprintf(stderr, "shutdown of the client socket (fd %d): %s\n", fd_.get(),
                         std::strerror(errno));
      FUZZ_CHECK(false);
    }
    while (!eof_) {
      if (!Wait(0)) {
        return false;
      }
    }
    return true;
  }

  // Replaces the placeholders of `bytes` (rpc_fuzz_input.h) with ids the
  // daemon returned so far, first waiting for every reply `sent` is owed.
  std::string Substitute(std::string_view bytes, std::string_view sent) {
    if (bytes.find('#') == std::string_view::npos) {
      return std::string(bytes);
    }
    const std::size_t owed = RepliesOwed(sent, kMaxFrameBytes).lines;
    while (!eof_ && replies_ < owed) {
      const bool answered = Wait(0);
      if (!answered) {
        (void)std::fprintf(stderr,
                           "client fd %d: %zu replies of %zu owed for the %zu bytes sent:\n%s\n",
                           fd_.get(), replies_, owed, sent.size(), std::string(sent).c_str());
      }
      CheckNoHang(answered, "waiting for the replies owed before a placeholder");
    }
    return ReplacePlaceholders(bytes, ids_);
  }

  [[nodiscard]] std::size_t replies() const { return replies_; }
  [[nodiscard]] bool frame_too_large() const { return frame_too_large_; }

 private:
  // Reads what is there; waits up to kTimeoutMs for `events` (or input).
  // libFuzzer's -timeout alarm (SIGALRM, every few seconds) interrupts poll:
  // EINTR is not a timeout, so the wait goes on for the time left.
  bool Wait(short events) {
    const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(kTimeoutMs);
    pollfd p{fd_.get(), static_cast<short>(events | POLLIN), 0};
    for (;;) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          until - std::chrono::steady_clock::now());
      const int ready = ::poll(&p, 1, static_cast<int>(std::max<int64_t>(left.count(), 0)));
      if (ready == 1) {
        break;
      }
      if (ready == 0 || errno != EINTR) {
        return false;
      }
    }
    if ((p.revents & (POLLIN | POLLHUP | POLLERR)) != 0) {
      Read();
    }
    return true;
  }

  void Read() {
    auto got = wire::RecvWithFds(fd_.get(), buf_);
    if (!got) {
      FUZZ_CHECK(got.error().code == EAGAIN || got.error().code == ECONNRESET);
      eof_ = got.error().code == ECONNRESET;
      return;
    }
    eof_ = got->bytes == 0;
    framer_.Feed({buf_.data(), got->bytes}, std::move(got->fds), got->fds_truncated);
    while (framer_.has_frame()) {
      Check(framer_.Pop());  // the reply's fds close with the frame
    }
  }

  // Notes the ids a result names, for the placeholders of later writes.
  void Remember(const json& response) {
    auto result = response.find("result");
    if (result == response.end() || !result->is_object()) {
      return;
    }
    for (auto& [key, ids] :
         {std::pair{"container", &ids_.containers}, std::pair{"mapping", &ids_.mappings},
          std::pair{"region", &ids_.regions}}) {
      auto id = result->find(key);
      if (id != result->end() && id->is_number_unsigned()) {
        ids->push_back(id->get<uint64_t>());
      }
    }
  }

  void Check(const wire::Frame& frame) {
    if (kTrace) {
      (void)std::fprintf(stderr, "reply: %.300s\n", frame.line.c_str());
    }
    const json reply = json::parse(frame.line, nullptr, /*allow_exceptions=*/false);
    FUZZ_CHECK(!reply.is_discarded());
    if (reply.is_object() && reply.contains("method")) {
      return;  // a progress notification
    }
    if (reply.is_array()) {
      FUZZ_CHECK(!reply.empty());
      for (const json& r : reply) {
        FUZZ_CHECK(IsResponse(r));
        Remember(r);
      }
    } else {
      FUZZ_CHECK(IsResponse(reply));
      Remember(reply);
      frame_too_large_ = frame_too_large_ || (reply.contains("error") &&
                                              reply.at("error").at("code") == wire::kFrameTooLarge);
    }
    ++replies_;
  }

  UniqueFd fd_;
  std::span<char> buf_ = ReadBuffer();
  wire::LineFramer framer_{1 << 26};
  SessionIds ids_;
  std::size_t replies_ = 0;
  bool frame_too_large_ = false;
  bool eof_ = false;
};

FuzzDaemon& Daemon() {
  static FuzzDaemon* daemon = new FuzzDaemon();  // lives as long as the process
  return *daemon;
}

void RunSession(std::string_view input) {
  FuzzDaemon& daemon = Daemon();
  // Read once, when it is steady (the daemon just started): after an input
  // the table is the one before the next.
  static FdTable fds_known = SteadyOpenFds();
  const FdTable fds_before = fds_known;
  {
    Client client(daemon.Connect());
    std::string stream;
    for (ClientWrite write : SplitWrites(input)) {
      const std::string bytes = client.Substitute(write.bytes, stream);
      write.bytes = bytes;
      if (!client.Send(write)) {
        break;
      }
      stream += bytes;
    }
    const bool closed = client.Finish();
    const OwedReplies owed = RepliesOwed(stream, kMaxFrameBytes);
    if (!closed) {
      (void)std::fprintf(stderr,
                         "no close after the half-close: %zu replies of %zu owed, %zu open\n",
                         client.replies(), owed.lines, daemon.connection_count());
    }
    CheckNoHang(closed, "waiting for the close after the half-close");
    if (owed.overflow) {
      FUZZ_CHECK(client.frame_too_large() && client.replies() <= owed.lines + 1);
    } else {
      FUZZ_CHECK(client.replies() == owed.lines);
    }
  }
  FUZZ_CHECK(daemon.WaitAllClosed());
  FUZZ_CHECK(daemon.service().Status().clients == 0);
  FUZZ_CHECK(daemon.Restore());
  const service::StatusView status = daemon.service().Status();
  FUZZ_CHECK(status.containers == 0 && status.mappings == 0 && status.locked_bytes == 0 &&
             status.dma_entries == 0);
  FUZZ_CHECK(daemon.StoreIsEmpty());
  // Every fd of the session is closed before its close hook runs (which
  // WaitAllClosed waited for), except a group (and its container) that a
  // device fd handed out kept alive: it is released at the next re-check of
  // the lingering groups, which Status() runs. So the table is nearly always
  // the same at once; a leak stays beyond 2 s of re-checks. The count is
  // checked (an fd the daemon reopens may come back as another number); the
  // tables name what changed.
  FdTable fds_after = OpenFds();
  for (int i = 0; i < 200 && fds_after.size() != fds_before.size(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    (void)daemon.service().Status();
    fds_after = OpenFds();
  }
  fds_known = fds_after;
  if (fds_after.size() != fds_before.size()) {
    PrintFdChanges(fds_before, fds_after);
  }
  FUZZ_CHECK(fds_after.size() == fds_before.size());
}

}  // namespace
}  // namespace vfiod::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  vfiod::fuzz::RunSession(std::string_view(reinterpret_cast<const char*>(data), size));
  return 0;
}
