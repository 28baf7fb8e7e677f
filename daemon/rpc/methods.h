// The vfiod API (proto/openrpc.json) on the JSON-RPC method registry: params
// are decoded and checked here (-32602 with the field's path), the service
// does the work, and its views and errors are turned into JSON here.
//
// Sessions: the first call on a connection opens a service session for the
// peer's credentials; the server's close hook (OnConnectionClosed, run after
// the connection's last call finished) closes it, releasing what it owned.
// sessions_ is guarded by mu_; handlers run on the server's strands and pool.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>

#include "rpc/method_registry.h"
#include "service/service.h"

namespace vfiod::rpc {

/// The JSON-RPC error for a service failure (kind -> vfiod code, errno in data).
[[nodiscard]] wire::RpcError ToRpcError(const service::ServiceError& err);

/// As ToRpcError, but a kernel error about the client's fd (EBADF, or an
/// op naming the fd: wrong file, not sealable) is the fd error code.
[[nodiscard]] wire::RpcError ToRpcErrorForFd(const service::ServiceError& err);

class ServiceMethods {
 public:
  /// `openrpc` is the OpenRPC document served by rpc.discover (JSON text).
  /// `service` must outlive this object and the server using it.
  ServiceMethods(service::Service& service, const std::string& openrpc);

  /// Registers every API method. EEXIST when a name is taken already.
  [[nodiscard]] Result<void> Register(MethodRegistry& registry);

  /// What daemon.restart calls (from the io thread, once its reply is
  /// queued) to hand over to the next vfiod; unset, daemon.restart is refused.
  void OnRestartRequested(std::function<void()> restart) { on_restart_ = std::move(restart); }

  /// Releases the session of connection `id` (the server's close hook).
  void OnConnectionClosed(ConnectionId id);

  /// Stops the release notices (the service's notifier points here).
  ~ServiceMethods();
  ServiceMethods(const ServiceMethods&) = delete;
  ServiceMethods& operator=(const ServiceMethods&) = delete;
  ServiceMethods(ServiceMethods&&) = delete;
  ServiceMethods& operator=(ServiceMethods&&) = delete;

 private:
  using Json = nlohmann::json;
  using Body = HandlerResult (ServiceMethods::*)(CallContext&, const Json&, const service::Caller&);
  [[nodiscard]] Result<void> Add(MethodRegistry& registry, const std::string& name, Body body,
                                 bool blocking, std::size_t reply_fds = 0);
  [[nodiscard]] HandlerResult Invoke(const std::string& name, Body body, CallContext& ctx,
                                     const Json& params);
  [[nodiscard]] service::Caller CallerFor(CallContext& ctx);

  HandlerResult Discover(CallContext&, const Json&, const service::Caller&);
  HandlerResult Ping(CallContext&, const Json&, const service::Caller&);
  HandlerResult Version(CallContext&, const Json&, const service::Caller&);
  HandlerResult Status(CallContext&, const Json&, const service::Caller&);
  HandlerResult Stats(CallContext&, const Json&, const service::Caller&);
  /// status and stats in the Prometheus text format (service/metrics.h).
  HandlerResult Metrics(CallContext&, const Json&, const service::Caller&);
  HandlerResult SessionInfo(CallContext&, const Json&, const service::Caller&);
  HandlerResult SessionResume(CallContext&, const Json&, const service::Caller&);
  HandlerResult DaemonRestart(CallContext&, const Json&, const service::Caller&);
  HandlerResult DeviceList(CallContext&, const Json&, const service::Caller&);
  HandlerResult DeviceInfo(CallContext&, const Json&, const service::Caller&);
  HandlerResult DeviceBind(CallContext&, const Json&, const service::Caller&);
  HandlerResult DeviceUnbind(CallContext&, const Json&, const service::Caller&);
  HandlerResult DeviceOpen(CallContext&, const Json&, const service::Caller&);
  HandlerResult DeviceReset(CallContext&, const Json&, const service::Caller&);
  HandlerResult ContainerCreate(CallContext&, const Json&, const service::Caller&);
  HandlerResult ContainerAttach(CallContext&, const Json&, const service::Caller&);
  HandlerResult ContainerShare(CallContext&, const Json&, const service::Caller&);
  HandlerResult ContainerUnshare(CallContext&, const Json&, const service::Caller&);
  /// container.share (`share`) or container.unshare.
  HandlerResult ShareOrUnshare(const Json& params, const service::Caller& caller, bool share);
  HandlerResult ContainerList(CallContext&, const Json&, const service::Caller&);
  HandlerResult ContainerInfo(CallContext&, const Json&, const service::Caller&);
  HandlerResult ContainerDestroy(CallContext&, const Json&, const service::Caller&);
  HandlerResult DmaAlloc(CallContext&, const Json&, const service::Caller&);
  HandlerResult DmaMapFd(CallContext&, const Json&, const service::Caller&);
  HandlerResult DmaMapBar(CallContext&, const Json&, const service::Caller&);
  HandlerResult DmaList(CallContext&, const Json&, const service::Caller&);
  HandlerResult DmaInfo(CallContext&, const Json&, const service::Caller&);
  HandlerResult DmaFree(CallContext&, const Json&, const service::Caller&);
  HandlerResult DmaRegister(CallContext&, const Json&, const service::Caller&);
  HandlerResult DmaUnregister(CallContext&, const Json&, const service::Caller&);
  HandlerResult DmaRegions(CallContext&, const Json&, const service::Caller&);

  /// Sends `notice` to the connection of `session` (methods_release.cc):
  /// device.release_requested or device.revoked. Dropped when the
  /// connection is gone or its output is full (logged).
  void NotifyRelease(service::SessionId session, const service::ReleaseNotice& notice);

  service::Service& service_;
  // The OpenRPC document as compact JSON text, serialised once: every
  // rpc.discover reply splices it in (no per-call copy or parse).
  std::shared_ptr<const std::string> openrpc_;
  std::function<void()> on_restart_;  // set before serving
  std::mutex mu_;
  std::map<ConnectionId, service::SessionId> sessions_;  // guarded by mu_
  // Each session's connection, for notifications outside a call; guarded by mu_.
  std::map<service::SessionId, std::weak_ptr<ConnectionInfo>> connections_;
};

}  // namespace vfiod::rpc
