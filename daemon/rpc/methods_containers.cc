// container.* and dma.* methods (see methods.h).
#include <fmt/format.h>

#include "proto/backing.h"
#include "proto/page_sizes.h"
#include "rpc/methods.h"
#include "rpc/methods_json.h"
#include "rpc/methods_params.h"
#include "service/stages.h"

namespace vfiod::rpc {

using nlohmann::json;
using service::Caller;

namespace {

std::unexpected<wire::RpcError> Failed(const service::ServiceError& err) {
  return std::unexpected(ToRpcError(err));
}

/// A name for a named container or mapping: 1-64 of [A-Za-z0-9._-].
std::string ReadName(ParamReader& p) {
  std::string name = p.OptStr("name").value_or("");
  if (p.Raw("name") != nullptr && name.empty()) {
    throw ParamError(p.Path("name") + ": must not be empty");
  }
  if (name.size() > 64) {
    throw ParamError(p.Path("name") + ": longer than 64 characters");
  }
  for (char c : name) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '_' && c != '-') {
      throw ParamError(p.Path("name") + ": only letters, digits, '.', '_' and '-' are allowed");
    }
  }
  return name;
}

/// iova / max_iova / dma_mask_bits, checked against `size` and `align`.
service::Placement ReadPlacement(ParamReader& p, uint64_t size, uint64_t align) {
  service::Placement placement;
  placement.iova = p.OptU64("iova");
  placement.max_iova = p.OptU64("max_iova");
  if (auto bits = p.OptInt("dma_mask_bits", 12, 64)) {
    placement.dma_mask_bits = static_cast<int>(*bits);
  }
  if (placement.iova) {
    CheckAligned(p.Path("iova"), *placement.iova, align);
    CheckNoWrap(p.Path("iova"), *placement.iova, size);
  }
  return placement;
}

/// The backings dma.alloc makes itself (not a client's file, not a BAR).
std::optional<wire::Backing> ParseAllocBacking(const std::string& name) {
  auto kind = wire::ParseBacking(name);
  return kind && *kind <= wire::Backing::kHugetlb1G ? kind : std::nullopt;
}

/// Reports progress when `wanted`, and abandons the map once the connection
/// has closed (the reply would go nowhere).
service::ProgressFn ProgressTo(CallContext& ctx, bool wanted) {
  return [&ctx, wanted](uint64_t done, uint64_t total) {
    if (wanted) {
      ctx.Notify("dma.progress", json{{"done_bytes", done}, {"total_bytes", total}});
    }
    return !ctx.cancelled();
  };
}

json MapResultJson(const service::MappingView& m) {
  json j = {{"mapping", m.id},
            {"iova", m.iova},
            {"size", m.size},
            {"chunks", m.chunks},
            {"ioctls", m.ioctls}};
  if (m.huge) {
    j["huge"] = {
        {"bytes", m.huge->bytes}, {"huge_bytes", m.huge->huge_bytes}, {"source", m.huge->source}};
  }
  if (m.numa) {
    json where = json::array();
    for (const auto& [node, bytes] : m.numa->placement.bytes) {
      where.push_back({{"node", node}, {"bytes", bytes}});
    }
    j["numa"] = {{"policy", m.numa->policy},
                 {"source", m.numa->source},
                 {"node", m.numa->placement.node()},
                 {"placement", std::move(where)}};
  }
  return j;
}

/// "require": only "thp" (every byte in folios of 2 MiB or more) exists.
bool ReadRequire(ParamReader& p) {
  auto require = p.OptStr("require");
  if (require && *require != "thp") {
    throw ParamError(p.Path("require") + ": '" + *require + "' is not a known requirement (thp)");
  }
  return require.has_value();
}

}  // namespace

HandlerResult ServiceMethods::ContainerCreate(CallContext&, const json& params,
                                              const Caller& caller) {
  ParamReader p(params);
  std::vector<std::string> devices = p.StrArray("devices");
  if (devices.empty()) {
    throw ParamError(p.Path("devices") + ": at least one device is needed");
  }
  for (size_t i = 0; i < devices.size(); ++i) {
    CheckBdf(p.Path("devices") + "[" + std::to_string(i) + "]", devices[i]);
  }
  std::string name = ReadName(p);
  service::ShareList share;
  if (const json* with = p.Raw("share_with")) {
    ParamReader sub(*with, p.Path("share_with"));
    share = ReadShareList(sub);
    sub.Finish();
  }
  p.Finish();
  auto c = service_.CreateContainer(caller, devices, name, share);
  if (!c) {
    return Failed(c.error());
  }
  return Reply(ContainerJson(*c));
}

HandlerResult ServiceMethods::ContainerAttach(CallContext&, const json& params,
                                              const Caller& caller) {
  ParamReader p(params);
  std::string name = p.Str("name");
  std::optional<uid_t> owner;
  if (const json* who = p.Raw("owner")) {
    owner = ReadUser(p.Path("owner"), *who);
  }
  p.Finish();
  auto c = service_.AttachContainer(caller, name, owner);
  if (!c) {
    return Failed(c.error());
  }
  return Reply(ContainerJson(*c));
}

HandlerResult ServiceMethods::ContainerShare(CallContext&, const json& params,
                                             const Caller& caller) {
  return ShareOrUnshare(params, caller, true);
}

HandlerResult ServiceMethods::ContainerUnshare(CallContext&, const json& params,
                                               const Caller& caller) {
  return ShareOrUnshare(params, caller, false);
}

HandlerResult ServiceMethods::ShareOrUnshare(const json& params, const Caller& caller, bool share) {
  ParamReader p(params);
  uint64_t id = p.U64("container");
  service::ShareList who = ReadShareList(p);
  p.Finish();
  if (who.empty()) {
    throw ParamError("params: name at least one of users and groups");
  }
  auto c = service_.ShareContainer(caller, id, who, share);
  if (!c) {
    return Failed(c.error());
  }
  return Reply(ContainerJson(*c));
}

HandlerResult ServiceMethods::ContainerList(CallContext&, const json& params,
                                            const Caller& caller) {
  ParamReader(params).Finish();
  json out = json::array();
  for (const auto& c : service_.ListContainers(caller)) {
    out.push_back(ContainerSummaryJson(c));
  }
  return Reply(std::move(out));
}

HandlerResult ServiceMethods::ContainerInfo(CallContext&, const json& params,
                                            const Caller& caller) {
  ParamReader p(params);
  uint64_t id = p.U64("container");
  p.Finish();
  auto info = service_.ContainerInfo(caller, id);
  if (!info) {
    return Failed(info.error());
  }
  json j = ContainerJson(info->first);
  json maps = json::array();
  for (const auto& m : info->second) {
    maps.push_back(MappingDetailJson(m));
  }
  j["mappings"] = std::move(maps);
  j["dma_entries_used"] = info->first.dma_entries_used;
  return Reply(std::move(j));
}

HandlerResult ServiceMethods::ContainerDestroy(CallContext&, const json& params,
                                               const Caller& caller) {
  ParamReader p(params);
  uint64_t id = p.U64("container");
  p.Finish();
  auto bytes = service_.DestroyContainer(caller, id);
  if (!bytes) {
    return Failed(bytes.error());
  }
  return Reply(json{{"unmapped_bytes", *bytes}});
}

HandlerResult ServiceMethods::DmaAlloc(CallContext& ctx, const json& params, const Caller& caller) {
  service::StageScope reading(caller.stages, service::Stage::kParams);
  ParamReader p(params);
  service::AllocRequest r;
  r.container = p.U64("container");
  r.size = p.U64("size");
  std::string backing = p.Str("backing");
  auto kind = ParseAllocBacking(backing);
  if (!kind) {
    throw ParamError(p.Path("backing") + ": '" + backing +
                     "' is not one of 4k, thp, hugetlb-2m, hugetlb-1g");
  }
  r.backing = *kind;
  if (r.size == 0) {
    throw ParamError(p.Path("size") + ": must be greater than zero");
  }
  CheckAligned(p.Path("size"), r.size, wire::BackingPageSize(r.backing));
  r.placement = ReadPlacement(p, r.size, kPage4K);
  if (auto node = p.OptInt("numa_node", -1, 1023)) {
    r.numa_node = static_cast<int>(*node);
  }
  r.name = ReadName(p);
  r.require_huge = ReadRequire(p);
  bool progress = p.OptBool("progress", false);
  p.Finish();
  reading.End();
  auto m = service_.Alloc(caller, r, ProgressTo(ctx, progress));
  if (!m) {
    return Failed(m.error());
  }
  service::StageScope result(caller.stages, service::Stage::kResult);
  json j = MapResultJson(m->mapping);
  j["backing"] = m->mapping.backing;
  j["fd"] = wire::FdRef(0);
  std::vector<UniqueFd> fds;
  fds.push_back(std::move(m->fd));
  return Reply(std::move(j), std::move(fds));
}

HandlerResult ServiceMethods::DmaMapFd(CallContext& ctx, const json& params, const Caller& caller) {
  service::StageScope reading(caller.stages, service::Stage::kParams);
  ParamReader p(params);
  service::MapFdRequest r;
  r.container = p.U64("container");
  r.region = p.OptU64("region");
  if ((p.Raw("fd") != nullptr) == r.region.has_value()) {
    throw ParamError(p.Path("fd") + ": give exactly one of fd and region");
  }
  std::optional<size_t> fd_index;
  if (!r.region) {
    fd_index = p.FdRef("fd");
  }
  r.offset = p.OptU64("offset").value_or(0);
  r.size = p.OptU64("size").value_or(0);
  CheckAligned(p.Path("offset"), r.offset, kPage4K);
  CheckAligned(p.Path("size"), r.size, kPage4K);
  CheckNoWrap(p.Path("offset"), r.offset, r.size);
  r.segments = ReadSegments(p, "segments");
  if (!r.segments.empty()) {
    for (const char* key : {"offset", "size"}) {
      if (p.Raw(key) != nullptr) {
        throw ParamError(p.Path(key) + ": not allowed with segments (each segment has its own)");
      }
    }
    if (r.segments[0].iova && p.Raw("iova") != nullptr) {
      throw ParamError(p.Path("iova") + ": not allowed when the segments name their iovas");
    }
  }
  r.placement = ReadPlacement(p, r.size, kPage4K);
  r.name = ReadName(p);
  r.require_huge = ReadRequire(p);
  bool progress = p.OptBool("progress", false);
  p.Finish();
  if (fd_index) {
    auto fd = ctx.TakeFd(*fd_index);
    if (!fd) {
      return std::unexpected(wire::MakeError(
          wire::kFdError, fmt::format("params.fd: the message carried no fd #{}", *fd_index)));
    }
    r.fd = std::move(*fd);
  }
  const uint64_t offset = r.segments.empty() ? r.offset : r.segments[0].offset;
  reading.End();
  auto m = service_.MapFd(caller, std::move(r), ProgressTo(ctx, progress));
  if (!m) {
    return std::unexpected(ToRpcErrorForFd(m.error()));
  }
  service::StageScope result(caller.stages, service::Stage::kResult);
  json j = MapResultJson(m->mapping);
  j["segments"] =
      m->mapping.segments.empty()
          ? json::array(
                {{{"offset", offset}, {"size", m->mapping.size}, {"iova", m->mapping.iova}}})
          : SegmentsJson(m->mapping.segments);
  return Reply(std::move(j));
}

HandlerResult ServiceMethods::DmaMapBar(CallContext&, const json& params, const Caller& caller) {
  service::StageScope reading(caller.stages, service::Stage::kParams);
  ParamReader p(params);
  service::MapBarRequest r;
  r.container = p.U64("container");
  r.bdf = p.Bdf("bdf");
  auto bar = p.OptInt("bar", 0, 5);
  if (!bar) {
    throw ParamError(p.Path("bar") + ": missing");
  }
  r.bar = static_cast<uint32_t>(*bar);
  r.placement.iova = p.OptU64("iova");
  r.placement.max_iova = p.OptU64("max_iova");
  if (r.placement.iova) {
    CheckAligned(p.Path("iova"), *r.placement.iova, kPage4K);
  }
  r.name = ReadName(p);
  p.Finish();
  reading.End();
  auto m = service_.MapBar(caller, r);
  if (!m) {
    return Failed(m.error());
  }
  service::StageScope result(caller.stages, service::Stage::kResult);
  return Reply(json{{"mapping", m->mapping.id},
                    {"iova", m->mapping.iova},
                    {"size", m->mapping.size},
                    {"aligned", m->mapping.aligned},
                    {"mmio_no_pin", m->mapping.mmio_no_pin}});
}

HandlerResult ServiceMethods::DmaList(CallContext&, const json& params, const Caller& caller) {
  ParamReader p(params);
  std::optional<uint64_t> container = p.OptU64("container");
  p.Finish();
  auto maps = service_.ListMappings(caller, container);
  if (!maps) {
    return Failed(maps.error());
  }
  json out = json::array();
  for (const auto& m : *maps) {
    out.push_back(MappingSummaryJson(m));
  }
  return Reply(std::move(out));
}

HandlerResult ServiceMethods::DmaInfo(CallContext&, const json& params, const Caller& caller) {
  ParamReader p(params);
  uint64_t id = p.U64("mapping");
  p.Finish();
  auto m = service_.MappingInfo(caller, id);
  if (!m) {
    return Failed(m.error());
  }
  return Reply(MappingDetailJson(*m));
}

HandlerResult ServiceMethods::DmaFree(CallContext&, const json& params, const Caller& caller) {
  service::StageScope reading(caller.stages, service::Stage::kParams);
  ParamReader p(params);
  uint64_t id = p.U64("mapping");
  p.Finish();
  reading.End();
  auto bytes = service_.FreeMapping(caller, id);
  if (!bytes) {
    return Failed(bytes.error());
  }
  service::StageScope result(caller.stages, service::Stage::kResult);
  return Reply(json{{"unmapped_bytes", *bytes}});
}

}  // namespace vfiod::rpc
