#include "client/vfiod_client.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>
#include <map>

#include "proto/fd_passing.h"

namespace vfiod::client {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

namespace {

// Replies can be large (device lists); the daemon's requests limit is smaller.
constexpr std::size_t kMaxReplyBytes = 64u << 20;

std::unexpected<wire::RpcError> Transport(const std::string& op, int err,
                                          const std::string& detail = {}) {
  return std::unexpected(wire::MakeError(Error{err, op, detail}, wire::kClientTransport));
}

std::unexpected<wire::RpcError> Protocol(const std::string& detail) {
  return std::unexpected(wire::MakeError(wire::kClientProtocol, detail));
}

Clock::time_point DeadlineAfter(std::chrono::milliseconds timeout) {
  return timeout < std::chrono::milliseconds::zero() ? Clock::time_point::max()
                                                     : Clock::now() + timeout;
}

// poll() timeout for `deadline`: -1 for none, else the ms left (0 if past).
int PollTimeout(Clock::time_point deadline) {
  if (deadline == Clock::time_point::max()) {
    return -1;
  }
  auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return static_cast<int>(std::clamp<long long>(left, 0, INT_MAX));
}

// Gives `result` its own fds: moves the ones it references out of `line_fds`
// and renumbers its references from 0. Unreferenced fds stay (and close) there.
void RemapFds(json& j, std::vector<UniqueFd>& line_fds, std::map<std::size_t, std::size_t>& seen,
              std::vector<UniqueFd>& out) {
  if (auto index = wire::AsFdRef(j)) {
    auto it = seen.find(*index);
    if (it == seen.end()) {
      std::size_t local = out.size();
      out.push_back(*index < line_fds.size() ? std::move(line_fds[*index]) : UniqueFd());
      it = seen.emplace(*index, local).first;
    }
    j["fd"] = it->second;
    return;
  }
  if (j.is_object() || j.is_array()) {
    for (auto& child : j) {
      RemapFds(child, line_fds, seen, out);
    }
  }
}

CallResult ToCallResult(json& reply, std::vector<UniqueFd>& line_fds) {
  if (auto error = reply.find("error"); error != reply.end()) {
    auto parsed = wire::ParseError(*error);
    if (!parsed) {
      return Protocol("malformed error object");
    }
    return std::unexpected(std::move(*parsed));
  }
  auto result = reply.find("result");
  if (result == reply.end()) {
    return Protocol("reply has neither result nor error");
  }
  Response response{std::move(*result), {}};
  std::map<std::size_t, std::size_t> seen;
  RemapFds(response.result, line_fds, seen, response.fds);
  return response;
}

bool HasIdIn(const json& j, const std::vector<std::int64_t>& ids) {
  if (!j.is_object()) {
    return false;
  }
  auto id = j.find("id");
  return id != j.end() && id->is_number_integer() &&
         std::find(ids.begin(), ids.end(), id->get<std::int64_t>()) != ids.end();
}

// A reply to the request(s) with `ids`: an object or batch array carrying one
// of them, or an error with id null (the daemon could not read the request,
// and the only request outstanding is ours).
bool IsReplyTo(const json& reply, const std::vector<std::int64_t>& ids) {
  if (reply.is_array()) {
    return std::any_of(reply.begin(), reply.end(), [&](const json& e) { return HasIdIn(e, ids); });
  }
  return HasIdIn(reply, ids) ||
         (reply.is_object() && reply.contains("error") && reply.value("id", json()).is_null());
}

bool IsNotification(const json& j) {
  return j.is_object() && j.contains("method") && !j.contains("id");
}

}  // namespace

Client::Client(UniqueFd fd)
    : fd_(std::move(fd)), framer_(std::make_unique<wire::LineFramer>(kMaxReplyBytes)) {}

Result<Client> Client::Connect(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof(addr.sun_path)) {
    return Fail(ENAMETOOLONG, "connect", path);
  }
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) {
    return ErrnoError("socket");
  }
  int rc = -1;
  do {
    rc = ::connect(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof(addr));
  } while (rc < 0 && errno == EINTR);
  if (rc < 0) {
    return ErrnoError("connect " + path);
  }
  // Non-blocking from here on: every wait is a poll() bounded by the deadline.
  int flags = ::fcntl(fd.get(), F_GETFL);
  if (flags < 0 || ::fcntl(fd.get(), F_SETFL, flags | O_NONBLOCK) < 0) {
    return ErrnoError("fcntl O_NONBLOCK");
  }
  Client client(std::move(fd));
  client.path_ = path;
  return client;
}

std::expected<void, wire::RpcError> Client::SendLine(const std::string& line,
                                                     std::span<const int> fds,
                                                     Clock::time_point deadline) {
  if (!fd_) {
    return Transport("send", ENOTCONN, "connection closed earlier");
  }
  std::size_t done = 0;
  while (done < line.size()) {
    pollfd p{fd_.get(), POLLOUT, 0};
    int ready = ::poll(&p, 1, PollTimeout(deadline));
    if (ready < 0 && errno == EINTR) {
      continue;
    }
    if (ready == 0) {
      // Part of a line may be out: the stream is unusable from here on.
      if (done > 0) {
        fd_.reset();
      }
      return std::unexpected(wire::MakeError(wire::kClientTimeout, "sending the request"));
    }
    auto sent = wire::SendWithFds(fd_.get(), {line.data() + done, line.size() - done},
                                  done == 0 ? fds : std::span<const int>());
    if (!sent) {
      if (sent.error().code == EAGAIN) {
        continue;
      }
      fd_.reset();
      return Transport("send", sent.error().code);
    }
    done += *sent;
  }
  return {};
}

std::expected<void, wire::RpcError> Client::ReadMore(Clock::time_point deadline) {
  pollfd p{fd_.get(), POLLIN, 0};
  int ready = 0;
  do {
    ready = ::poll(&p, 1, PollTimeout(deadline));
  } while (ready < 0 && errno == EINTR);
  if (ready == 0) {
    return std::unexpected(wire::MakeError(wire::kClientTimeout, "waiting for the reply"));
  }
  read_buf_.resize(size_t{64} * 1024);  // allocated and cleared once, not per reply
  auto got = wire::RecvWithFds(fd_.get(), read_buf_);
  if (!got && got.error().code == EAGAIN) {
    return {};  // a spurious wakeup: poll again
  }
  if (!got || got->bytes == 0) {
    int err = got ? ECONNRESET : got.error().code;
    fd_.reset();
    return Transport("receive", err, "the daemon closed the connection");
  }
  framer_->Feed({read_buf_.data(), got->bytes}, std::move(got->fds), got->fds_truncated);
  if (framer_->overflowed()) {
    fd_.reset();
    return Protocol("reply line longer than " + std::to_string(kMaxReplyBytes) + " bytes");
  }
  return {};
}

std::expected<wire::Frame, wire::RpcError> Client::AwaitReply(const std::vector<std::int64_t>& ids,
                                                              Clock::time_point deadline,
                                                              json& reply) {
  for (;;) {
    while (!framer_->has_frame()) {
      if (!fd_) {
        return Transport("receive", ENOTCONN, "connection closed earlier");
      }
      auto more = ReadMore(deadline);
      if (!more) {
        return std::unexpected(std::move(more).error());
      }
    }
    wire::Frame frame = framer_->Pop();
    if (wire::JsonNestingDepth(frame.line) > wire::kMaxJsonDepth) {
      return Protocol("reply nested too deeply");
    }
    reply = json::parse(frame.line, nullptr, false);
    if (reply.is_discarded()) {
      return Protocol("reply is not JSON");
    }
    if (IsNotification(reply)) {
      if (on_notification_) {
        on_notification_(reply["method"].get<std::string>(), reply.value("params", json(nullptr)));
      }
      continue;
    }
    if (IsReplyTo(reply, ids)) {
      return frame;
    }
    // A late reply to a call that timed out: drop it (and its fds).
  }
}

CallResult Client::CallOnce(const std::string& method, const json& params, std::span<const int> fds,
                            std::chrono::milliseconds timeout) {
  Clock::time_point deadline = DeadlineAfter(timeout);
  std::int64_t id = next_id_++;
  auto sent = SendLine(wire::ToLine(wire::MakeRequest(method, params, json(id))), fds, deadline);
  if (!sent) {
    return std::unexpected(std::move(sent).error());
  }
  json reply;
  auto frame = AwaitReply({id}, deadline, reply);
  if (!frame) {
    return std::unexpected(std::move(frame).error());
  }
  if (!reply.is_object()) {
    return Protocol("reply is not an object");
  }
  return ToCallResult(reply, frame->fds);
}

std::expected<void, wire::RpcError> Client::Notify(const std::string& method, const json& params,
                                                   std::span<const int> fds) {
  return SendLine(wire::ToLine(wire::MakeRequest(method, params, std::nullopt)), fds,
                  DeadlineAfter(kDefaultTimeout));
}

std::expected<std::vector<CallResult>, wire::RpcError> Client::Batch(
    const std::vector<BatchCall>& calls, std::span<const int> fds,
    std::chrono::milliseconds timeout) {
  Clock::time_point deadline = DeadlineAfter(timeout);
  json batch = json::array();
  std::vector<std::int64_t> ids;  // one per call that expects a reply, in order
  for (const BatchCall& call : calls) {
    std::optional<json> id;
    if (!call.notification) {
      ids.push_back(next_id_++);
      id = json(ids.back());
    }
    batch.push_back(wire::MakeRequest(call.method, call.params, id));
  }
  auto sent = SendLine(wire::ToLine(batch), fds, deadline);
  if (!sent) {
    return std::unexpected(std::move(sent).error());
  }
  std::vector<CallResult> results;
  if (ids.empty()) {
    return results;  // only notifications: the daemon sends nothing back
  }
  json reply;
  auto frame = AwaitReply(ids, deadline, reply);
  if (!frame) {
    return std::unexpected(std::move(frame).error());
  }
  if (!reply.is_array()) {  // the batch as a whole failed
    auto whole = ToCallResult(reply, frame->fds);
    return std::unexpected(whole ? wire::MakeError(wire::kClientProtocol, "non-array batch reply")
                                 : std::move(whole).error());
  }
  std::map<std::int64_t, json*> by_id;
  for (json& element : reply) {
    if (HasIdIn(element, ids)) {
      by_id[element["id"].get<std::int64_t>()] = &element;
    }
  }
  for (std::int64_t id : ids) {
    auto it = by_id.find(id);
    if (it == by_id.end()) {
      results.push_back(Protocol("no reply for batch element " + std::to_string(id)));
    } else {
      results.push_back(ToCallResult(*it->second, frame->fds));
    }
  }
  return results;
}

}  // namespace vfiod::client
