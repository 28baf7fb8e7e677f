#include "vfioctl/session.h"

#include <pwd.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <iostream>

#include "vfioctl/progress.h"

namespace vfiod::vfioctl {

using nlohmann::json;

bool IsId(const std::string& text) {
  return !text.empty() && text.size() <= 19 &&
         std::all_of(text.begin(), text.end(), [](unsigned char c) { return std::isdigit(c); });
}

std::chrono::milliseconds Session::Timeout() const {
  if (options_.timeout_s <= 0) {
    return client::kNoTimeout;
  }
  return std::chrono::milliseconds(static_cast<int64_t>(options_.timeout_s * 1000));
}

std::expected<client::Client*, Failure> Session::Connect() {
  if (client_) {
    return &*client_;
  }
  auto connected = client::Client::Connect(options_.socket);
  if (!connected) {
    return std::unexpected(
        Failure{Exit::kUnreachable, "cannot reach vfiod at " + options_.socket + ": " +
                                        connected.error().message() +
                                        " (is the daemon running? see --socket)"});
  }
  return &client_.emplace(std::move(*connected));
}

CallOutcome Session::Call(const std::string& method, const json& params, std::span<const int> fds) {
  return CallWithin(method, params, fds, Timeout());
}

CallOutcome Session::CallWithin(const std::string& method, const json& params,
                                std::span<const int> fds, std::chrono::milliseconds timeout) {
  auto client = Connect();
  if (!client) {
    return std::unexpected(std::move(client).error());
  }
  auto reply = (*client)->Call(method, params, fds, timeout);
  if (!reply) {
    return std::unexpected(FailureFor(method, reply.error()));
  }
  return std::move(*reply);
}

CallOutcome Session::CallWithProgress(const std::string& method, json params,
                                      std::span<const int> fds) {
  auto client = Connect();
  if (!client) {
    return std::unexpected(std::move(client).error());
  }
  const auto timeout = options_.timeout_given ? Timeout() : client::kNoTimeout;
  ProgressBar bar(!options_.no_progress && ProgressBar::StderrIsTerminal());
  if (!bar.enabled()) {
    return CallWithin(method, params, fds, timeout);  // no notifications nobody would see
  }
  params["progress"] = true;
  (*client)->OnNotification([&bar](const std::string& name, const json& p) {
    if (name == "dma.progress" && p.is_object()) {
      bar.Update(p.value("done_bytes", uint64_t{0}), p.value("total_bytes", uint64_t{0}));
    }
  });
  auto reply = CallWithin(method, params, fds, timeout);
  (*client)->OnNotification(nullptr);
  bar.Finish();
  return reply;
}

std::expected<uid_t, Failure> Session::NameOwner() const {
  if (options_.owner.empty()) {
    return ::getuid();
  }
  if (IsId(options_.owner)) {
    return static_cast<uid_t>(std::stoull(options_.owner));
  }
  const passwd* entry = ::getpwnam(options_.owner.c_str());
  if (entry == nullptr) {
    return std::unexpected(
        Failure{Exit::kUsage, "--owner: no user named '" + options_.owner + "'"});
  }
  return entry->pw_uid;
}

std::expected<uint64_t, Failure> Session::ResolveContainer(const std::string& ref) {
  if (IsId(ref)) {
    return std::stoull(ref);
  }
  json params = {{"name", ref}};
  if (!options_.owner.empty()) {
    params["owner"] =
        IsId(options_.owner) ? json(std::stoull(options_.owner)) : json(options_.owner);
  }
  auto attached = Call("container.attach", params);
  if (!attached) {
    return std::unexpected(std::move(attached).error());
  }
  const json& c = attached->result;
  const uint64_t id = c.at("container").get<uint64_t>();
  const uid_t owner = c.value("owner_uid", ::getuid());
  if (owner != ::getuid()) {
    std::cerr << "vfioctl: using container '" << ref << "' (id " << id << ") of uid " << owner
              << '\n';
  }
  return id;
}

std::expected<uint64_t, Failure> Session::ResolveMapping(const std::string& ref) {
  if (IsId(ref)) {
    return std::stoull(ref);
  }
  auto owner = NameOwner();
  if (!owner) {
    return std::unexpected(std::move(owner).error());
  }
  auto list = Call("dma.list");
  if (!list) {
    return std::unexpected(std::move(list).error());
  }
  for (const json& m : list->result) {
    if (m.value("name", std::string()) == ref && m.value("owner_uid", uid_t{0}) == *owner) {
      return m.at("mapping").get<uint64_t>();
    }
  }
  return std::unexpected(Failure{Exit::kRpcError, "dma: uid " + std::to_string(*owner) +
                                                      " has no mapping named '" + ref +
                                                      "' visible to this client"});
}

void Session::Emit(const json& result, const std::function<void(std::ostream&)>& human) const {
  if (options_.json) {
    std::cout << result.dump(-1, ' ', false, json::error_handler_t::replace) << '\n';
  } else {
    human(std::cout);
  }
}

}  // namespace vfiod::vfioctl
