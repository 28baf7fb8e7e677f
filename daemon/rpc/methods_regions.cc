// dma.register, dma.unregister and dma.regions (see methods.h): client memory
// regions registered once and mapped slice by slice with dma.map_fd.
#include <fmt/format.h>

#include "proto/page_sizes.h"
#include "rpc/methods.h"
#include "rpc/methods_params.h"

namespace vfiod::rpc {

using nlohmann::json;
using service::Caller;

namespace {

json RegionJson(const service::RegionView& r) {
  return {{"region", r.id},
          {"size", r.size},
          {"page_size", r.page_size},
          {"backing", r.backing},
          {"file_offset", r.file_offset}};
}

}  // namespace

HandlerResult ServiceMethods::DmaRegister(CallContext& ctx, const json& params,
                                          const Caller& caller) {
  ParamReader p(params);
  size_t fd_index = p.FdRef("fd");
  service::RegisterRequest r;
  r.offset = p.OptU64("offset").value_or(0);
  r.size = p.OptU64("size").value_or(0);
  CheckAligned(p.Path("offset"), r.offset, kPage4K);
  CheckAligned(p.Path("size"), r.size, kPage4K);
  CheckNoWrap(p.Path("offset"), r.offset, r.size);
  p.Finish();
  auto fd = ctx.TakeFd(fd_index);
  if (!fd) {
    return std::unexpected(wire::MakeError(
        wire::kFdError, fmt::format("params.fd: the message carried no fd #{}", fd_index)));
  }
  r.fd = std::move(*fd);
  auto region = service_.RegisterRegion(caller, std::move(r));
  if (!region) {
    return std::unexpected(ToRpcErrorForFd(region.error()));
  }
  return Reply(RegionJson(*region));
}

HandlerResult ServiceMethods::DmaUnregister(CallContext&, const json& params,
                                            const Caller& caller) {
  ParamReader p(params);
  uint64_t id = p.U64("region");
  p.Finish();
  auto done = service_.UnregisterRegion(caller, id);
  if (!done) {
    return std::unexpected(ToRpcError(done.error()));
  }
  return Reply(json{{"region", id}});
}

HandlerResult ServiceMethods::DmaRegions(CallContext&, const json& params, const Caller& caller) {
  ParamReader(params).Finish();
  json out = json::array();
  for (const auto& r : service_.ListRegions(caller)) {
    out.push_back(RegionJson(r));
  }
  return Reply(std::move(out));
}

}  // namespace vfiod::rpc
