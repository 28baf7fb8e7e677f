#include "rpc/server.h"

#include <spdlog/fmt/fmt.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/asio/bind_executor.hpp>
#include <boost/asio/post.hpp>
#include <chrono>
#include <future>

#include "journal/sink.h"
#include "proto/jsonrpc.h"
#include "rpc/listen_socket.h"
#include "rpc/peer_credentials.h"

namespace vfiod::rpc {

namespace {
constexpr int kAcceptsPerWakeup = 16;
constexpr auto kAcceptRetry = std::chrono::milliseconds(100);

// One error line (id null) to a refused peer. Best effort: a fresh socket's
// buffer takes it at once, and nothing waits for a peer that does not read.
void SendRefusal(int fd, const Refusal& refused) {
  std::string line = wire::ToLine(
      wire::MakeErrorResponse(nullptr, wire::MakeLimitError(refused.limit, refused.detail)));
  (void)!::send(fd, line.data(), line.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
}
// Close hooks: four threads, at most one of them on one user's clean-ups, so
// a user whose clean-up waits (for a map still running on a named container
// it used) holds one closer, and the others' clean-ups go on.
constexpr std::size_t kCloseThreads = 4;
constexpr std::size_t kClosesPerUser = 1;
}  // namespace

Server::Server(asio::io_context& io, const MethodRegistry& registry, ServerConfig config)
    : io_(io),
      registry_(registry),
      config_(config),
      workers_(config.worker_threads, config.blocking_per_user, "vfiod-worker"),
      closers_(kCloseThreads, kClosesPerUser, "vfiod-closer"),
      server_strand_(asio::make_strand(io)),
      listener_(server_strand_),
      accept_retry_(server_strand_),
      admission_(config) {}

Server::~Server() {
  workers_.Join();
  closers_.Join();
  if (!unlink_path_.empty()) {
    ::unlink(unlink_path_.c_str());
  }
}

Result<void> Server::AssignListener(UniqueFd fd) {
  if (listener_.is_open()) {
    return Fail(EBUSY, "rpc listen", "the server already has a listening socket");
  }
  boost::system::error_code ec;
  listener_.assign(fd.get(), ec);
  if (ec) {
    return Fail(ec.value(), "rpc listen", ec.message());
  }
  (void)fd.release();  // listener_ owns it now
  return Ok();
}

Result<void> Server::Listen(const std::string& path, mode_t mode, std::optional<gid_t> group) {
  if (listener_.is_open()) {
    return Fail(EBUSY, "rpc listen", "the server already has a listening socket");
  }
  UniqueFd fd = VFIOD_TRY(ListenUnix(path, mode, group));
  VFIOD_TRY(AssignListener(std::move(fd)));
  unlink_path_ = path;
  spdlog::info("rpc: listening on {} (mode {:o})", path, mode);
  return Ok();
}

Result<void> Server::Adopt(UniqueFd listening_fd) {
  UniqueFd fd = VFIOD_TRY(AdoptListeningSocket(std::move(listening_fd)));
  VFIOD_TRY(AssignListener(std::move(fd)));
  spdlog::info("rpc: serving inherited socket fd {}", listener_.native_handle());
  return Ok();
}

void Server::AddCloseHook(CloseHook hook) { close_hooks_.push_back(std::move(hook)); }

void Server::Start() {
  asio::post(server_strand_, [this] { WaitAccept(); });
}

void Server::Stop() {
  asio::post(server_strand_, [this] {
    if (stopped_) {
      return;
    }
    stopped_ = true;
    boost::system::error_code ignored;
    listener_.close(ignored);
    accept_retry_.cancel();
    if (!unlink_path_.empty()) {
      ::unlink(unlink_path_.c_str());
      unlink_path_.clear();
    }
    for (auto& [id, conn] : connections_) {
      conn->Close();
    }
  });
}

void Server::WaitAccept() {
  if (stopped_) {
    return;
  }
  listener_.async_wait(asio::posix::descriptor_base::wait_read,
                       asio::bind_executor(server_strand_, [this](auto ec) {
                         if (!ec) {
                           AcceptPending();
                         }
                       }));
}

void Server::AcceptPending() {
  for (int i = 0; i < kAcceptsPerWakeup && !stopped_; ++i) {
    auto fd = AcceptConnection(listener_.native_handle());
    if (fd) {
      Serve(std::move(*fd));
      continue;
    }
    int err = fd.error().code;
    if (err == EAGAIN || err == ECONNABORTED) {
      break;
    }
    // EMFILE/ENFILE/ENOBUFS: the pending connection stays queued; retry later
    // rather than spinning on a listener that stays readable.
    spdlog::error("rpc: {}", fd.error().message());
    accept_retry_.expires_after(kAcceptRetry);
    accept_retry_.async_wait(asio::bind_executor(server_strand_, [this](auto ec) {
      if (!ec) {
        WaitAccept();
      }
    }));
    return;
  }
  WaitAccept();
}

void Server::Serve(UniqueFd fd) {
  auto peer = ReadPeerCredentials(fd.get());
  if (!peer) {
    spdlog::warn("rpc: refusing connection: {}", peer.error().message());
    return;
  }
  if (auto refused = admission_.Admit(peer->uid)) {
    journal::Emit({.kind = journal::Kind::kConnectionRefused,
                   .message = fmt::format("rpc: refusing a connection of uid {} (pid {}): {}",
                                          peer->uid, peer->pid, refused->detail),
                   .uid = peer->uid,
                   .pid = peer->pid});
    SendRefusal(fd.get(), *refused);
    return;  // fd closes: the client reads the error line, then EOF
  }
  auto info = std::make_shared<ConnectionInfo>();
  info->id = ++next_id_;
  info->peer = std::move(*peer);
  ConnectionEnv env{&registry_, &workers_, config_,
                    [this](const std::shared_ptr<ConnectionInfo>& closed) { OnClosed(closed); }};
  journal::Emit({.kind = journal::Kind::kConnectionOpened,
                 .message = fmt::format("rpc: connection {} from uid {} gid {} pid {}", info->id,
                                        info->peer.uid, info->peer.gid, info->peer.pid),
                 .uid = info->peer.uid,
                 .pid = info->peer.pid,
                 .connection = info->id});
  auto conn = std::make_shared<Connection>(io_, std::move(fd), info, std::move(env));
  connections_.emplace(info->id, conn);
  ++connection_count_;
  conn->Start();
}

void Server::OnClosed(const std::shared_ptr<ConnectionInfo>& info) {
  // Runs on the connection's strand: hand the table update to ours, and the
  // hooks (which may free DMA memory, slowly) to the closers, not behind the
  // calls queued for the workers.
  asio::post(server_strand_, [this, info] {
    connections_.erase(info->id);
    admission_.Release(info->peer.uid);
    closers_.Post(info->peer.uid, [this, info] {
      for (const CloseHook& hook : close_hooks_) {
        hook(info->id, info->peer);
      }
      --connection_count_;
    });
  });
}

std::vector<std::string> Server::DescribeConnections(std::chrono::milliseconds timeout) {
  const auto until = std::chrono::steady_clock::now() + timeout;
  auto table = std::make_shared<std::promise<std::vector<std::shared_ptr<Connection>>>>();
  auto listed = table->get_future();
  asio::post(server_strand_, [this, table] {
    std::vector<std::shared_ptr<Connection>> open;
    open.reserve(connections_.size());
    for (const auto& [id, conn] : connections_) {
      open.push_back(conn);
    }
    table->set_value(std::move(open));
  });
  if (listed.wait_until(until) != std::future_status::ready) {
    return {"the server's strand did not answer"};
  }
  std::vector<std::string> lines;
  for (const std::shared_ptr<Connection>& conn : listed.get()) {
    auto line = std::make_shared<std::promise<std::string>>();
    auto described = line->get_future();
    conn->Describe([line](std::string text) { line->set_value(std::move(text)); });
    lines.push_back(described.wait_until(until) == std::future_status::ready
                        ? described.get()
                        : "connection " + std::to_string(conn->id()) +
                              ": its strand did not answer");
  }
  return lines;
}

}  // namespace vfiod::rpc
