// `vfioctl dma register` and the scatter-list syntax of `dma map-fd
// --segments`. A region belongs to the connection that registered it, and
// vfioctl's connection ends with the command: so `register` maps the slices
// it is given (--slice) from the region in the same call, and they outlive
// vfioctl only when named (--name PREFIX names them PREFIX-0, PREFIX-1, ...).
#include <fcntl.h>

#include <cstring>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "proto/unique_fd.h"
#include "vfioctl/commands.h"
#include "vfioctl/format.h"
#include "vfioctl/sizes.h"

namespace vfiod::vfioctl {

using nlohmann::json;

namespace {

/// "OFFSET:SIZE" or "OFFSET:SIZE@IOVA", each a size as ParseSize reads it.
std::expected<json, Failure> ParsePiece(const std::string& text, const char* what) {
  const size_t colon = text.find(':');
  const size_t at = text.find('@');
  auto bad = [&] {
    return UsageError(std::string(what) + ": '" + text +
                      "' is not OFFSET:SIZE or OFFSET:SIZE@IOVA (e.g. 0:64K, 1M:4K@0x100000)");
  };
  if (colon == std::string::npos || (at != std::string::npos && at < colon)) {
    return bad();
  }
  auto offset = ParseSize(text.substr(0, colon));
  auto size = ParseSize(text.substr(colon + 1, at == std::string::npos ? at : at - colon - 1));
  if (!offset || !size) {
    return bad();
  }
  json piece = {{"offset", *offset}, {"size", *size}};
  if (at != std::string::npos) {
    auto iova = ParseSize(text.substr(at + 1));
    if (!iova) {
      return bad();
    }
    piece["iova"] = *iova;
  }
  return piece;
}

struct RegisterOptions {
  std::string container;
  std::string file;
  uint64_t offset = 0;
  uint64_t size = 0;
  std::vector<std::string> slices;
  std::string name;
};

void PrintRegistered(std::ostream& out, const json& r) {
  const json& region = r["region"];
  out << "region " << Field(region, "region") << ": " << SizeField(region, "size") << " of "
      << Field(region, "backing") << " (page " << SizeField(region, "page_size") << ")\n";
  for (const json& m : r["mappings"]) {
    out << "  mapping " << Field(m, "mapping") << ": " << SizeField(m, "size") << " at IOVA "
        << HexField(m, "iova") << '\n';
  }
}

CmdResult Register(Session& session, const RegisterOptions& o) {
  std::vector<json> slices;
  for (const std::string& text : o.slices) {
    auto piece = ParsePiece(text, "dma register --slice");
    if (!piece) {
      return std::unexpected(std::move(piece).error());
    }
    slices.push_back(std::move(*piece));
  }
  UniqueFd fd(::open(o.file.c_str(), O_RDWR | O_CLOEXEC));
  if (!fd) {
    return UsageError("dma register: cannot open " + o.file + ": " + std::strerror(errno));
  }
  auto container = session.ResolveContainer(o.container);
  if (!container) {
    return std::unexpected(std::move(container).error());
  }
  json params = {{"fd", json{{"fd", 0}}}, {"offset", o.offset}, {"size", o.size}};
  const int fds[] = {fd.get()};
  auto region = session.Call("dma.register", params, fds);
  if (!region) {
    return std::unexpected(std::move(region).error());
  }
  json out = {{"region", region->result}, {"mappings", json::array()}};
  for (size_t i = 0; i < slices.size(); ++i) {
    json map = {{"container", *container}, {"region", region->result["region"]}};
    map.update(slices[i]);
    if (map.contains("iova")) {
      map["iova"] = slices[i]["iova"];
    }
    if (!o.name.empty()) {
      map["name"] = o.name + "-" + std::to_string(i);
    }
    auto mapped = session.CallWithProgress("dma.map_fd", std::move(map));
    if (!mapped) {
      return std::unexpected(std::move(mapped).error());
    }
    out["mappings"].push_back(mapped->result);
  }
  session.Emit(out, [&](std::ostream& os) { PrintRegistered(os, out); });
  if (o.name.empty() && !slices.empty() && !session.json_output()) {
    std::cerr << "note: these mappings were unmapped when vfioctl exited; give --name to keep "
                 "them\n";
  }
  return {};
}

}  // namespace

std::expected<json, Failure> ParseSegmentList(const std::string& text) {
  json list = json::array();
  size_t start = 0;
  while (start <= text.size()) {
    size_t comma = text.find(',', start);
    std::string item = text.substr(start, comma == std::string::npos ? comma : comma - start);
    auto piece = ParsePiece(item, "--segments");
    if (!piece) {
      return std::unexpected(std::move(piece).error());
    }
    list.push_back(std::move(*piece));
    if (comma == std::string::npos) {
      break;
    }
    start = comma + 1;
  }
  return list;
}

void AddRegisterCommand(CLI::App* dma, Dispatch& dispatch) {
  auto o = std::make_shared<RegisterOptions>();
  CLI::App* sub = dma->add_subcommand(
      "register",
      "Register a memfd/hugetlbfs file once as a region and map slices of it (dma.register)");
  sub->add_option("container", o->container, "container id or name for the slices")->required();
  sub->add_option("file", o->file, "the file, e.g. /proc/PID/fd/N or a hugetlbfs path")->required();
  sub->add_option("--offset", o->offset, "where the region starts in the file")
      ->transform(SizeArg());
  sub->add_option("--size", o->size, "region bytes (default: the rest of the file)")
      ->transform(SizeArg());
  sub->add_option("--slice", o->slices, "map OFFSET:SIZE[@IOVA] of the region (repeatable)");
  sub->add_option("--name,-n", o->name,
                  "keep the slices after vfioctl exits, named NAME-0, NAME-1, ...");
  OnParsed(sub, dispatch, [o](Session& s) { return Register(s, *o); });
}

}  // namespace vfiod::vfioctl
