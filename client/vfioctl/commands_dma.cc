// `vfioctl dma alloc|map-fd|map-bar|list|info|free` (`register`: commands_dma_region.cc).
//
// Mappings, like containers, belong to the connection that made them unless
// named: without --name a mapping made by vfioctl is unmapped when vfioctl
// exits (useful only to check that it can be made). Containers are named by
// id or name (see Session::ResolveContainer), mappings by id or name.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <iostream>
#include <span>
#include <string>

#include "proto/backing.h"
#include "proto/unique_fd.h"
#include "vfioctl/commands.h"
#include "vfioctl/format.h"
#include "vfioctl/sizes.h"
#include "vfioctl/table.h"

namespace vfiod::vfioctl {

using nlohmann::json;

void PrintMappingTable(std::ostream& out, const json& mappings) {
  Table table({"MAPPING", "NAME", "CONTAINER", "IOVA", "SIZE", "BACKING"});
  for (const json& m : mappings) {
    table.AddRow({Field(m, "mapping"), Field(m, "name"), Field(m, "container"), HexField(m, "iova"),
                  SizeField(m, "size"), Field(m, "backing")});
  }
  if (table.empty()) {
    out << "no mappings\n";
    return;
  }
  table.Print(out);
}

namespace {

/// Where to place a mapping; each option is sent only when given.
struct PlacementOptions {
  uint64_t iova = 0;
  uint64_t max_iova = 0;
  int dma_mask_bits = 0;
  CLI::Option* iova_opt = nullptr;
  CLI::Option* max_iova_opt = nullptr;
  CLI::Option* mask_opt = nullptr;

  void Add(CLI::App* sub, bool with_mask) {
    iova_opt = sub->add_option("--iova", iova, "map exactly at this IOVA")->transform(SizeArg());
    max_iova_opt = sub->add_option("--max-iova", max_iova, "highest IOVA byte the device reaches")
                       ->transform(SizeArg());
    if (with_mask) {
      mask_opt =
          sub->add_option("--dma-mask-bits", dma_mask_bits, "the device's DMA mask width (edu: 28)")
              ->check(CLI::Range(12, 64));
    }
  }
  void AddTo(json& params) const {
    if (iova_opt->count() > 0) {
      params["iova"] = iova;
    }
    if (max_iova_opt->count() > 0) {
      params["max_iova"] = max_iova;
    }
    if (mask_opt != nullptr && mask_opt->count() > 0) {
      params["dma_mask_bits"] = dma_mask_bits;
    }
  }
};

struct AllocOptions {
  std::string container;
  uint64_t size = 0;
  std::string backing{wire::BackingName(wire::Backing::k4K)};
  int numa_node = -1;
  CLI::Option* numa_opt = nullptr;
  std::string name;
  PlacementOptions placement;
  bool require_thp = false;
};

void NoteUnnamed(const Session& session, const std::string& name) {
  if (name.empty() && !session.json_output()) {
    std::cerr << "note: this mapping was unmapped when vfioctl exited; give it --name to keep "
                 "it\n";
  }
}

// "NUMA: asked node 1 (the devices' node); on node 1: 64 MiB", or the spread.
void PrintNuma(std::ostream& out, const json& numa) {
  const std::string source = numa.value("source", "");
  out << "  NUMA: ";
  if (source == "none") {
    out << "no node asked";
  } else {
    out << "asked node " << Field(numa, "policy")
        << (source == "device" ? " (the devices' node)" : " (as requested)");
  }
  const json& placement = numa.value("placement", json::array());
  if (placement.empty()) {
    out << "; where it is: unknown\n";
    return;
  }
  out << ";";
  for (const json& part : placement) {
    const int node = part.value("node", -1);
    out << (node < 0 ? " not present: " : " on node " + std::to_string(node) + ": ")
        << SizeField(part, "bytes") << (&part == &placement.back() ? "" : ",");
  }
  out << '\n';
}

void PrintNewMapping(std::ostream& out, const json& r, uint64_t container) {
  out << "mapping " << Field(r, "mapping") << ": " << SizeField(r, "size");
  if (r.contains("backing")) {
    out << " of " << Field(r, "backing") << " memory";
  }
  out << " at IOVA " << HexField(r, "iova") << " in container " << container;
  if (r.contains("chunks")) {
    out << " (" << Count(r, "chunks", "IOMMU entry", "IOMMU entries") << ", "
        << Count(r, "ioctls", "MAP_DMA ioctl", "MAP_DMA ioctls") << ")";
  }
  out << '\n';
  if (r.contains("huge")) {
    out << "  in folios of 2 MiB or more: " << SizeField(r["huge"], "huge_bytes") << " of "
        << SizeField(r["huge"], "bytes") << " (read from " << Field(r["huge"], "source") << ")\n";
  }
  if (r.contains("numa")) {
    PrintNuma(out, r["numa"]);
  }
}

// Asks for a new mapping of memory (`params` complete but for the optional
// name) with the progress bar, prints it, and notes when it will not outlive
// vfioctl.
CmdResult CreateMemoryMapping(Session& session, const std::string& method, json params,
                              uint64_t container, const std::string& name,
                              std::span<const int> fds = {}) {
  if (!name.empty()) {
    params["name"] = name;
  }
  auto reply = session.CallWithProgress(method, std::move(params), fds);
  if (!reply) {
    return std::unexpected(std::move(reply).error());
  }
  session.Emit(reply->result,
               [&](std::ostream& out) { PrintNewMapping(out, reply->result, container); });
  NoteUnnamed(session, name);
  return {};
}

CmdResult Alloc(Session& session, const AllocOptions& o) {
  auto container = session.ResolveContainer(o.container);
  if (!container) {
    return std::unexpected(std::move(container).error());
  }
  json params = {{"container", *container}, {"size", o.size}, {"backing", o.backing}};
  o.placement.AddTo(params);
  if (o.numa_opt->count() > 0) {
    params["numa_node"] = o.numa_node;
  }
  if (o.require_thp) {
    params["require"] = "thp";
  }
  return CreateMemoryMapping(session, "dma.alloc", std::move(params), *container, o.name);
}

struct MapFdOptions {
  std::string container;
  int fd = -1;
  std::string file;
  uint64_t offset = 0;
  uint64_t size = 0;
  std::string segments;  ///< a scatter list: OFF:SIZE[@IOVA],...
  std::string name;
  PlacementOptions placement;
};

// The fd to pass: --fd N (inherited, borrowed) or --file PATH (opened here).
std::expected<int, Failure> SourceFd(const MapFdOptions& o, UniqueFd& opened) {
  if (!o.file.empty()) {
    opened.reset(::open(o.file.c_str(), O_RDWR | O_CLOEXEC));
    if (!opened) {
      return UsageError("dma map-fd: cannot open " + o.file + ": " + std::strerror(errno));
    }
    return opened.get();
  }
  if (::fcntl(o.fd, F_GETFD) < 0) {
    return UsageError("dma map-fd: --fd " + std::to_string(o.fd) + " is not an open descriptor");
  }
  return o.fd;
}

CmdResult MapFd(Session& session, const MapFdOptions& o) {
  UniqueFd opened;
  auto fd = SourceFd(o, opened);
  if (!fd) {
    return std::unexpected(std::move(fd).error());
  }
  auto container = session.ResolveContainer(o.container);
  if (!container) {
    return std::unexpected(std::move(container).error());
  }
  const int fds[] = {*fd};
  if (!o.segments.empty()) {
    auto segments = ParseSegmentList(o.segments);
    if (!segments) {
      return std::unexpected(std::move(segments).error());
    }
    json params = {{"container", *container}, {"fd", json{{"fd", 0}}}, {"segments", *segments}};
    o.placement.AddTo(params);
    return CreateMemoryMapping(session, "dma.map_fd", std::move(params), *container, o.name, fds);
  }
  uint64_t size = o.size;
  if (size == 0) {
    struct stat st {};
    if (::fstat(*fd, &st) < 0 || static_cast<uint64_t>(st.st_size) <= o.offset) {
      return UsageError("dma map-fd: give --size (the file is empty past --offset)");
    }
    size = static_cast<uint64_t>(st.st_size) - o.offset;
  }
  json params = {
      {"container", *container}, {"fd", json{{"fd", 0}}}, {"offset", o.offset}, {"size", size}};
  o.placement.AddTo(params);
  return CreateMemoryMapping(session, "dma.map_fd", std::move(params), *container, o.name, fds);
}

struct MapBarOptions {
  std::string container;
  std::string bdf;
  int bar = 0;
  std::string name;
  PlacementOptions placement;
};

CmdResult MapBar(Session& session, const MapBarOptions& o) {
  auto container = session.ResolveContainer(o.container);
  if (!container) {
    return std::unexpected(std::move(container).error());
  }
  json params = {{"container", *container}, {"bdf", o.bdf}, {"bar", o.bar}};
  o.placement.AddTo(params);
  if (!o.name.empty()) {
    params["name"] = o.name;
  }
  auto result = CallAndEmit(session, "dma.map_bar", params, [&](std::ostream& out, const json& r) {
    out << "mapping " << Field(r, "mapping") << ": BAR" << o.bar << " of " << o.bdf << " ("
        << SizeField(r, "size") << ") at IOVA " << HexField(r, "iova") << " in container "
        << *container << "; size-aligned in vfiod: " << Field(r, "aligned")
        << ", MMIO without pinning: " << Field(r, "mmio_no_pin") << '\n';
  });
  if (result) {
    NoteUnnamed(session, o.name);
  }
  return result;
}

void PrintMappingInfo(std::ostream& out, const json& m) {
  PrintField(out, "mapping",
             Field(m, "mapping") + (m.contains("name") ? " '" + Field(m, "name") + "'" : ""));
  PrintField(out, "container", Field(m, "container"));
  PrintField(out, "iova", HexField(m, "iova"));
  PrintField(out, "size", SizeField(m, "size"));
  PrintField(out, "backing", Field(m, "backing"));
  PrintField(out, "iommu entries", Field(m, "chunks"));
  PrintField(out, "map ioctls", Field(m, "ioctls"));
  if (auto c = m.find("contiguity"); c != m.end()) {
    PrintField(out, "contiguity",
               Field(*c, "state") + ", " + Field(*c, "runs") + " physically contiguous runs");
    std::string hist;
    for (const auto& [bucket, n] : Member(*c, "histogram").items()) {
      hist += (hist.empty() ? "" : ", ") + bucket + " pages: " + Text(n);
    }
    PrintField(out, "run lengths", hist.empty() ? "-" : hist);
    std::string folios;
    for (const auto& [size, n] : Member(*c, "folios").items()) {
      folios += (folios.empty() ? "" : ", ") + size + ": " + Text(n);
    }
    if (!folios.empty() && c->contains("folio_source")) {
      folios += " (from " + Field(*c, "folio_source") + ")";
    }
    PrintField(out, "folios", folios.empty() ? "-" : folios);
    if (c->contains("note")) {
      PrintField(out, "note", Field(*c, "note"));
    }
  }
}

struct ListOptions {
  std::string container;
};

CmdResult List(Session& session, const ListOptions& o) {
  json params = nullptr;
  if (!o.container.empty()) {
    auto id = session.ResolveContainer(o.container);
    if (!id) {
      return std::unexpected(std::move(id).error());
    }
    params = json{{"container", *id}};
  }
  return CallAndEmit(session, "dma.list", params, PrintMappingTable);
}

CmdResult OnMapping(Session& session, const std::string& ref, const char* method,
                    void (*human)(std::ostream&, const json&)) {
  auto id = session.ResolveMapping(ref);
  if (!id) {
    return std::unexpected(std::move(id).error());
  }
  return CallAndEmit(session, method, json{{"mapping", *id}}, human);
}

void AddAlloc(CLI::App* dma, Dispatch& dispatch) {
  auto o = std::make_shared<AllocOptions>();
  CLI::App* sub = dma->add_subcommand(
      "alloc", "Allocate memory in vfiod and map it for DMA (the memfd comes back to the caller)");
  sub->add_option("container", o->container, "container id or name")->required();
  sub->add_option("size", o->size, "bytes: 4096, 2M, 1G, ...")->required()->transform(SizeArg());
  sub->add_option("--backing,-b", o->backing, "page backing")
      ->check(CLI::IsMember(wire::AllocBackingNames()))
      ->capture_default_str();
  o->placement.Add(sub, true);
  o->numa_opt = sub->add_option("--numa-node", o->numa_node, "allocate on this NUMA node");
  sub->add_option("--name,-n", o->name, "keep the mapping after vfioctl exits, under this name");
  sub->add_flag("--require-thp", o->require_thp,
                "refuse unless every byte is in folios of 2 MiB or more (ENOMEM otherwise)");
  OnParsed(sub, dispatch, [o](Session& s) { return Alloc(s, *o); });
}

void AddMapFd(CLI::App* dma, Dispatch& dispatch) {
  auto o = std::make_shared<MapFdOptions>();
  CLI::App* sub =
      dma->add_subcommand("map-fd", "Map your own memfd (sealed against shrinking) for DMA");
  sub->add_option("container", o->container, "container id or name")->required();
  auto* fd = sub->add_option("--fd", o->fd, "an open descriptor vfioctl inherited (3<...)");
  auto* file = sub->add_option("--file", o->file, "a path to open, e.g. /proc/PID/fd/N");
  fd->excludes(file);
  auto* offset = sub->add_option("--offset", o->offset, "offset in the file")->transform(SizeArg());
  auto* size = sub->add_option("--size", o->size, "bytes (default: the file's size past --offset)")
                   ->transform(SizeArg());
  sub->add_option("--segments", o->segments,
                  "a scatter list OFF:SIZE[@IOVA],... mapped as one mapping (back to back in "
                  "IOVA unless every piece names its IOVA)")
      ->excludes(size)
      ->excludes(offset);
  o->placement.Add(sub, true);
  sub->add_option("--name,-n", o->name, "keep the mapping after vfioctl exits, under this name");
  OnParsed(sub, dispatch, [o, fd, file](Session& s) {
    if (fd->count() + file->count() != 1) {
      return CmdResult(UsageError("dma map-fd: give exactly one of --fd and --file"));
    }
    return MapFd(s, *o);
  });
}

void AddMapBar(CLI::App* dma, Dispatch& dispatch) {
  auto o = std::make_shared<MapBarOptions>();
  CLI::App* sub =
      dma->add_subcommand("map-bar", "Map a device's BAR into a container (peer-to-peer DMA)");
  sub->add_option("container", o->container, "container id or name")->required();
  sub->add_option("bdf", o->bdf, "PCI address of the device owning the BAR")->required();
  sub->add_option("bar", o->bar, "BAR index 0-5")->required()->check(CLI::Range(0, 5));
  o->placement.Add(sub, false);
  sub->add_option("--name,-n", o->name, "keep the mapping after vfioctl exits, under this name");
  OnParsed(sub, dispatch, [o](Session& s) { return MapBar(s, *o); });
}

}  // namespace

void AddDmaCommands(CLI::App& app, Dispatch& dispatch) {
  CLI::App* dma = app.add_subcommand("dma", "DMA mappings: allocate, map, inspect, free");
  dma->require_subcommand(1);
  AddAlloc(dma, dispatch);
  AddMapFd(dma, dispatch);
  AddMapBar(dma, dispatch);
  AddRegisterCommand(dma, dispatch);

  auto l = std::make_shared<ListOptions>();
  CLI::App* list = dma->add_subcommand("list", "Your mappings");
  list->add_option("--container,-c", l->container, "only this container (id or name)");
  OnParsed(list, dispatch, [l](Session& s) { return List(s, *l); });

  auto i = std::make_shared<std::string>();
  CLI::App* info =
      dma->add_subcommand("info", "One mapping, with its physical contiguity and folio sizes");
  info->add_option("mapping", *i, "mapping id or name")->required();
  OnParsed(info, dispatch,
           [i](Session& s) { return OnMapping(s, *i, "dma.info", PrintMappingInfo); });

  auto f = std::make_shared<std::string>();
  CLI::App* free = dma->add_subcommand("free", "Unmap a mapping and release its memory");
  free->add_option("mapping", *f, "mapping id or name")->required();
  OnParsed(free, dispatch, [f](Session& s) {
    return OnMapping(s, *f, "dma.free", [](std::ostream& out, const json& r) {
      out << "freed (unmapped " << SizeField(r, "unmapped_bytes") << ")\n";
    });
  });
}

}  // namespace vfiod::vfioctl
