// Live restart (issue 14) as clients see it: session.info and
// session.resume (how a client gets its unnamed objects back after vfiod
// restarted), and daemon.restart (root asks for a graceful hand-over).
#include "lifecycle/state_record.h"
#include "rpc/methods.h"
#include "rpc/methods_params.h"

namespace vfiod::rpc {

using nlohmann::json;
using service::Caller;

HandlerResult ServiceMethods::SessionInfo(CallContext&, const json& params, const Caller& caller) {
  ParamReader(params).Finish();
  return Reply(json{{"session", caller.session},
                    {"token", service_.SessionToken(caller.session)},
                    {"resumable", service_.has_fd_store()}});
}

HandlerResult ServiceMethods::SessionResume(CallContext&, const json& params,
                                            const Caller& caller) {
  ParamReader p(params);
  std::string token = p.Str("token");
  p.Finish();
  if (!lifecycle::IsSessionToken(token)) {
    throw ParamError(p.Path("token") + ": not a session token (32 lowercase hex digits)");
  }
  auto resumed = service_.ResumeSession(caller, token);
  if (!resumed) {
    return std::unexpected(ToRpcError(resumed.error()));
  }
  return Reply(json{{"containers", resumed->containers},
                    {"mappings", resumed->mappings},
                    {"regions", resumed->regions}});
}

HandlerResult ServiceMethods::DaemonRestart(CallContext&, const json& params,
                                            const Caller& caller) {
  ParamReader(params).Finish();
  if (!caller.is_root()) {
    return std::unexpected(wire::MakeError(
        Error{EPERM, "daemon.restart", "only root may restart vfiod"}, wire::kPermissionDenied));
  }
  if (!service_.has_fd_store() || !on_restart_) {
    return std::unexpected(wire::MakeError(
        Error{EBUSY, "daemon.restart",
              "no fd store: a restart would release every container and mapping (vfiod was "
              "started by hand; under systemd use systemctl restart vfiod)"},
        wire::kBusy));
  }
  on_restart_();  // after this reply is queued: the server stops from the io thread
  return Reply(json{{"restarting", true}});
}

}  // namespace vfiod::rpc
