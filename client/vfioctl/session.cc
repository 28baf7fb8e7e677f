#include "vfioctl/session.h"

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

std::expected<uint64_t, Failure> Session::ResolveContainer(const std::string& ref) {
  if (IsId(ref)) {
    return std::stoull(ref);
  }
  auto list = Call("container.list");
  if (!list) {
    return std::unexpected(std::move(list).error());
  }
  for (const json& c : list->result) {
    if (c.value("name", std::string()) == ref) {
      return c.at("container").get<uint64_t>();
    }
  }
  auto attached = Call("container.attach", json{{"name", ref}});
  if (!attached) {
    return std::unexpected(std::move(attached).error());
  }
  return attached->result.at("container").get<uint64_t>();
}

std::expected<uint64_t, Failure> Session::ResolveMapping(const std::string& ref) {
  if (IsId(ref)) {
    return std::stoull(ref);
  }
  auto list = Call("dma.list");
  if (!list) {
    return std::unexpected(std::move(list).error());
  }
  for (const json& m : list->result) {
    if (m.value("name", std::string()) == ref) {
      return m.at("mapping").get<uint64_t>();
    }
  }
  return std::unexpected(
      Failure{Exit::kRpcError, "dma: no mapping named '" + ref + "' visible to this client"});
}

void Session::Emit(const json& result, const std::function<void(std::ostream&)>& human) const {
  if (options_.json) {
    std::cout << result.dump(-1, ' ', false, json::error_handler_t::replace) << '\n';
  } else {
    human(std::cout);
  }
}

}  // namespace vfiod::vfioctl
