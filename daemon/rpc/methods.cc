#include "rpc/methods.h"

#include <spdlog/spdlog.h>

#include <chrono>

#include "journal/sink.h"
#include "rpc/methods_events.h"
#include "rpc/methods_json.h"
#include "rpc/methods_params.h"
#include "service/exposition.h"

namespace vfiod::rpc {

using nlohmann::json;
using service::Caller;
using service::ErrorKind;

wire::RpcError ToRpcError(const service::ServiceError& err) {
  switch (err.kind) {
    case ErrorKind::kInvalidParams:
      return wire::MakeError(err.error, wire::kInvalidParams);
    case ErrorKind::kNotFound:
      return wire::MakeError(err.error, wire::kNotFound);
    case ErrorKind::kPermission:
      return wire::MakeError(err.error, wire::kPermissionDenied);
    case ErrorKind::kQuota:
      return wire::MakeError(err.error, wire::kQuotaExceeded);
    case ErrorKind::kBusy:
      return wire::MakeError(err.error, wire::kBusy);
    case ErrorKind::kBadFd:
      return wire::MakeError(err.error, wire::kFdError);
    case ErrorKind::kKernel:
      break;
  }
  return wire::MakeError(err.error, wire::kKernelError);
}

wire::RpcError ToRpcErrorForFd(const service::ServiceError& err) {
  if (err.kind == ErrorKind::kKernel && err.error.code == EBADF) {
    return wire::MakeError(err.error, wire::kFdError);
  }
  return ToRpcError(err);
}

namespace {

std::unexpected<wire::RpcError> Failed(const service::ServiceError& err) {
  return std::unexpected(ToRpcError(err));
}

}  // namespace

ServiceMethods::ServiceMethods(service::Service& service, const std::string& openrpc)
    : service_(service),
      openrpc_(std::make_shared<const std::string>(json::parse(openrpc, nullptr, false).dump())) {
  service_.SetReleaseNotifier(
      [this](service::SessionId session, const service::ReleaseNotice& notice) {
        NotifyRelease(session, notice);
      });
}

ServiceMethods::~ServiceMethods() { service_.SetReleaseNotifier({}); }

Result<void> ServiceMethods::Register(MethodRegistry& r) {
  VFIOD_TRY(Add(r, "rpc.discover", &ServiceMethods::Discover, false));
  VFIOD_TRY(Add(r, "ping", &ServiceMethods::Ping, false));
  VFIOD_TRY(Add(r, "version", &ServiceMethods::Version, false));
  VFIOD_TRY(Add(r, "status", &ServiceMethods::Status, false));
  VFIOD_TRY(Add(r, "stats", &ServiceMethods::Stats, false));
  VFIOD_TRY(Add(r, "metrics", &ServiceMethods::Metrics, false));
  VFIOD_TRY(Add(r, "session.info", &ServiceMethods::SessionInfo, false));
  VFIOD_TRY(Add(r, "session.resume", &ServiceMethods::SessionResume, false));
  VFIOD_TRY(Add(r, "daemon.restart", &ServiceMethods::DaemonRestart, false));
  VFIOD_TRY(Add(r, "device.list", &ServiceMethods::DeviceList, true));
  VFIOD_TRY(Add(r, "device.info", &ServiceMethods::DeviceInfo, true));
  VFIOD_TRY(Add(r, "device.bind", &ServiceMethods::DeviceBind, true));
  VFIOD_TRY(Add(r, "device.unbind", &ServiceMethods::DeviceUnbind, true));
  VFIOD_TRY(Add(r, "device.open", &ServiceMethods::DeviceOpen, true, /*reply_fds=*/1));
  VFIOD_TRY(Add(r, "device.reset", &ServiceMethods::DeviceReset, true));
  VFIOD_TRY(Add(r, "container.create", &ServiceMethods::ContainerCreate, true));
  VFIOD_TRY(Add(r, "container.attach", &ServiceMethods::ContainerAttach, true));
  VFIOD_TRY(Add(r, "container.share", &ServiceMethods::ContainerShare, false));
  VFIOD_TRY(Add(r, "container.unshare", &ServiceMethods::ContainerUnshare, false));
  VFIOD_TRY(Add(r, "container.list", &ServiceMethods::ContainerList, false));
  VFIOD_TRY(Add(r, "container.info", &ServiceMethods::ContainerInfo, true));
  VFIOD_TRY(Add(r, "container.destroy", &ServiceMethods::ContainerDestroy, true));
  VFIOD_TRY(Add(r, "dma.alloc", &ServiceMethods::DmaAlloc, true, /*reply_fds=*/1));
  VFIOD_TRY(Add(r, "dma.map_fd", &ServiceMethods::DmaMapFd, true));
  VFIOD_TRY(Add(r, "dma.map_bar", &ServiceMethods::DmaMapBar, true));
  VFIOD_TRY(Add(r, "dma.list", &ServiceMethods::DmaList, false));
  VFIOD_TRY(Add(r, "dma.info", &ServiceMethods::DmaInfo, true));
  VFIOD_TRY(Add(r, "dma.free", &ServiceMethods::DmaFree, true));
  VFIOD_TRY(Add(r, "dma.register", &ServiceMethods::DmaRegister, true));
  VFIOD_TRY(Add(r, "dma.unregister", &ServiceMethods::DmaUnregister, true));
  VFIOD_TRY(Add(r, "dma.regions", &ServiceMethods::DmaRegions, false));
  return Ok();
}

Result<void> ServiceMethods::Add(MethodRegistry& registry, const std::string& name, Body body,
                                 bool blocking, std::size_t reply_fds) {
  MethodOptions options;
  options.blocking = blocking;
  options.reply_fds = reply_fds;
  options.on_reply = [this, name](uid_t uid, std::chrono::nanoseconds reply) {
    service_.stats().RecordReply(uid, name, static_cast<uint64_t>(reply.count()));
  };
  return registry.Register(
      name,
      [this, name, body](CallContext& ctx, const json& params) {
        return Invoke(name, body, ctx, params);
      },
      options);
}

HandlerResult ServiceMethods::Invoke(const std::string& name, Body body, CallContext& ctx,
                                     const json& params) {
  using Clock = std::chrono::steady_clock;
  const Clock::time_point start = Clock::now();
  service::StageClock stages;
  if (ctx.received_at() != Clock::time_point{}) {
    stages.Add(service::Stage::kParse, ctx.dispatched_at() - ctx.received_at());
    stages.Add(service::Stage::kQueue, start - ctx.dispatched_at());
  }
  HandlerResult result;
  try {
    Caller caller = CallerFor(ctx);  // does not throw
    caller.stages = &stages;
    if (auto allowed = service_.CheckMethodAllowed(caller, name); !allowed) {
      result = Failed(allowed.error());
    } else {
      result = (this->*body)(ctx, params, caller);
    }
  } catch (const ParamError& e) {
    result = std::unexpected(wire::MakeError(wire::kInvalidParams, e.what()));
  } catch (const json::exception& e) {
    result = std::unexpected(wire::MakeError(wire::kInvalidParams, e.what()));
  }
  const Clock::duration handler = Clock::now() - start;
  stages.Close(handler);
  service_.stats().RecordRequest(
      ctx.peer().uid, name,
      static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(handler).count()),
      result ? std::string() : wire::CodeName(result.error().code), &stages.times());
  if (!result) {
    if (auto event = FailureEvent(name, ctx.peer().uid, ctx.peer().pid, params, result.error())) {
      journal::Emit(*event);
    } else {
      spdlog::debug("{} from uid {}: {}", name, ctx.peer().uid, result.error().Describe());
    }
  }
  return result;
}

Caller ServiceMethods::CallerFor(CallContext& ctx) {
  service::Identity identity{ctx.peer().uid, ctx.peer().gid, ctx.peer().groups};
  service::SessionId session = 0;
  {
    std::lock_guard lock(mu_);
    auto it = sessions_.find(ctx.connection_id());
    if (it != sessions_.end()) {
      return Caller{it->second, identity};
    }
    session = service_.OpenSession(identity);
    sessions_[ctx.connection_id()] = session;
    connections_[session] = ctx.connection();
  }
  if (ctx.cancelled()) {
    // The close hook may have run before the session existed: release it now.
    OnConnectionClosed(ctx.connection_id());
  }
  return Caller{session, identity};
}

void ServiceMethods::OnConnectionClosed(ConnectionId id) {
  service::SessionId session = 0;
  {
    std::lock_guard lock(mu_);
    auto it = sessions_.find(id);
    if (it == sessions_.end()) {
      return;
    }
    session = it->second;
    sessions_.erase(it);
    connections_.erase(session);
  }
  service_.CloseSession(session);
}

// --- daemon ------------------------------------------------------------------------

HandlerResult ServiceMethods::Discover(CallContext&, const json& params, const Caller&) {
  ParamReader(params).Finish();
  return Reply::Text(openrpc_);
}

HandlerResult ServiceMethods::Ping(CallContext&, const json& params, const Caller&) {
  ParamReader(params).Finish();
  return Reply(json::object());
}

HandlerResult ServiceMethods::Version(CallContext&, const json& params, const Caller&) {
  ParamReader(params).Finish();
  auto s = service_.Status();
  return Reply(json{{"version", s.version}, {"api", s.api_version}});
}

HandlerResult ServiceMethods::Status(CallContext&, const json& params, const Caller& caller) {
  ParamReader(params).Finish();
  return Reply(ToJson(service_.StatusFor(caller)));
}

HandlerResult ServiceMethods::Stats(CallContext&, const json& params, const Caller& caller) {
  ParamReader(params).Finish();
  return Reply(ToJson(service_.StatsFor(caller)));
}

HandlerResult ServiceMethods::Metrics(CallContext&, const json& params, const Caller& caller) {
  ParamReader(params).Finish();
  return Reply(json{{"content_type", service::kExpositionContentType},
                    {"text", service::RenderMetrics(service_.MetricsFor(caller))}});
}

// --- devices -------------------------------------------------------------------------

HandlerResult ServiceMethods::DeviceList(CallContext&, const json& params, const Caller& caller) {
  ParamReader(params).Finish();
  auto devices = service_.ListDevices(caller);
  if (!devices) {
    return Failed(devices.error());
  }
  json out = json::array();
  for (const auto& d : *devices) {
    out.push_back(DeviceSummaryJson(d));
  }
  return Reply(std::move(out));
}

HandlerResult ServiceMethods::DeviceInfo(CallContext&, const json& params, const Caller& caller) {
  ParamReader p(params);
  std::string bdf = p.Bdf("bdf");
  p.Finish();
  auto d = service_.DeviceInfo(caller, bdf);
  if (!d) {
    return Failed(d.error());
  }
  return Reply(DeviceDetailJson(*d));
}

HandlerResult ServiceMethods::DeviceBind(CallContext&, const json& params, const Caller& caller) {
  ParamReader p(params);
  std::string bdf = p.Bdf("bdf");
  p.Finish();
  auto d = service_.BindDevice(caller, bdf);
  if (!d) {
    return Failed(d.error());
  }
  return Reply(json{{"bdf", d->pci.bdf}, {"driver", d->pci.driver}, {"viable", d->viable}});
}

HandlerResult ServiceMethods::DeviceUnbind(CallContext&, const json& params, const Caller& caller) {
  ParamReader p(params);
  std::string bdf = p.Bdf("bdf");
  p.Finish();
  auto d = service_.UnbindDevice(caller, bdf);
  if (!d) {
    return Failed(d.error());
  }
  return Reply(json{{"bdf", d->pci.bdf}, {"driver", d->pci.driver}});
}

namespace {

/// device.open's "reset": what was done about the previous users' state.
const char* HandOverResetName(service::HandOverReset reset) {
  switch (reset) {
    case service::HandOverReset::kFunction:
      return "function";
    case service::HandOverReset::kHot:
      return "hot";
    case service::HandOverReset::kUnavailable:
      return "unavailable";
    case service::HandOverReset::kDisabled:
      return "disabled";
    case service::HandOverReset::kNotNeeded:
      break;
  }
  return "not_needed";
}

}  // namespace

HandlerResult ServiceMethods::DeviceOpen(CallContext&, const json& params, const Caller& caller) {
  ParamReader p(params);
  uint64_t container = p.U64("container");
  std::string bdf = p.Bdf("bdf");
  p.Finish();
  auto opened = service_.OpenDevice(caller, container, bdf);
  if (!opened) {
    return Failed(opened.error());
  }
  json result = {{"bdf", opened->bdf},
                 {"fd", wire::FdRef(0)},
                 {"num_regions", opened->info.num_regions},
                 {"num_irqs", opened->info.num_irqs},
                 {"flags", opened->info.flags},
                 {"reset", HandOverResetName(opened->reset)}};
  std::vector<UniqueFd> fds;
  fds.push_back(std::move(opened->fd));
  return Reply(std::move(result), std::move(fds));
}

HandlerResult ServiceMethods::DeviceReset(CallContext&, const json& params, const Caller& caller) {
  ParamReader p(params);
  std::string bdf = p.Bdf("bdf");
  p.Finish();
  auto method = service_.ResetDevice(caller, bdf);
  if (!method) {
    return Failed(method.error());
  }
  const char* how = *method == service::ResetMethod::kFunction ? "function" : "hot";
  return Reply(json{{"bdf", bdf}, {"method", how}});
}

}  // namespace vfiod::rpc
