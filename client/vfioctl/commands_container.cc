// `vfioctl container create|attach|list|info|destroy`.
//
// A container belongs to the connection that made it, and vfioctl's
// connection ends when the command does: an unnamed container is released the
// moment `container create` returns. Give it --name to keep it until
// `container destroy`; every other command accepts the name in place of the id.
#include <iostream>
#include <string>
#include <vector>

#include "vfioctl/commands.h"
#include "vfioctl/format.h"
#include "vfioctl/sizes.h"
#include "vfioctl/table.h"

namespace vfiod::vfioctl {

using nlohmann::json;

namespace {

void PrintContainer(std::ostream& out, const json& c) {
  std::string name = Field(c, "name");
  PrintField(out, "container",
             Field(c, "container") + (name.empty() ? " (unnamed)" : " '" + name + "' (named)"));
  PrintField(out, "groups", Field(c, "groups"));
  std::string ranges;
  for (const json& r : Member(c, "iova_ranges")) {
    ranges += (ranges.empty() ? "" : ", ") + HexField(r, "start") + "-" + HexField(r, "last");
  }
  PrintField(out, "iova ranges", ranges.empty() ? "-" : ranges);
  PrintField(out, "page sizes", PageSizes(c.value("iova_pgsizes", uint64_t{0})));
  PrintField(out, "dma entries", Field(c, "dma_avail") + " available");
  std::string ext;
  for (const auto& [key, on] : Member(c, "extensions").items()) {
    if (on.is_boolean() && on.get<bool>()) {
      ext += (ext.empty() ? "" : " ") + key;
    }
  }
  PrintField(out, "extensions", ext.empty() ? "-" : ext);
}

struct CreateOptions {
  std::vector<std::string> devices;
  std::string name;
};

CmdResult Create(Session& session, const CreateOptions& o) {
  json params = {{"devices", o.devices}};
  if (!o.name.empty()) {
    params["name"] = o.name;
  }
  auto result = CallAndEmit(session, "container.create", params, PrintContainer);
  if (result && o.name.empty() && !session.json_output()) {
    std::cerr << "note: this container was released when vfioctl exited; give it --name to keep "
                 "it\n";
  }
  return result;
}

struct RefOptions {
  std::string container;
};

CmdResult Info(Session& session, const RefOptions& o) {
  auto id = session.ResolveContainer(o.container);
  if (!id) {
    return std::unexpected(std::move(id).error());
  }
  return CallAndEmit(session, "container.info", json{{"container", *id}},
                     [](std::ostream& out, const json& c) {
                       PrintContainer(out, c);
                       PrintField(out, "entries used", Field(c, "dma_entries_used"));
                       out << '\n';
                       PrintMappingTable(out, Member(c, "mappings"));
                     });
}

CmdResult Destroy(Session& session, const RefOptions& o) {
  auto id = session.ResolveContainer(o.container);
  if (!id) {
    return std::unexpected(std::move(id).error());
  }
  return CallAndEmit(session, "container.destroy", json{{"container", *id}},
                     [&](std::ostream& out, const json& r) {
                       out << "destroyed container " << *id << " (unmapped "
                           << SizeField(r, "unmapped_bytes") << ")\n";
                     });
}

void PrintContainerList(std::ostream& out, const json& list) {
  Table table({"CONTAINER", "NAME", "OWNER", "GROUPS", "MAPPINGS", "MAPPED"});
  for (const json& c : list) {
    std::string name = Field(c, "name");
    table.AddRow({Field(c, "container"), name.empty() ? "-" : name, Field(c, "owner_uid"),
                  Field(c, "groups"), Field(c, "mappings"), SizeField(c, "mapped_bytes")});
  }
  if (table.empty()) {
    out << "no containers (unnamed ones live only as long as the connection that made them)\n";
    return;
  }
  table.Print(out);
}

}  // namespace

void AddContainerCommands(CLI::App& app, Dispatch& dispatch) {
  CLI::App* container = app.add_subcommand(
      "container", "VFIO containers (IOMMU address spaces); name them to keep them");
  container->require_subcommand(1);

  auto c = std::make_shared<CreateOptions>();
  CLI::App* create =
      container->add_subcommand("create", "Create a container holding the IOMMU groups of DEVICES");
  create->add_option("devices", c->devices, "PCI addresses")->required();
  create->add_option("--name,-n", c->name,
                     "keep the container after vfioctl exits, under this name");
  OnParsed(create, dispatch, [c](Session& s) { return Create(s, *c); });

  auto a = std::make_shared<std::string>();
  CLI::App* attach = container->add_subcommand(
      "attach", "Check that a named container can be used (policy: all its devices)");
  attach->add_option("name", *a, "container name")->required();
  OnParsed(attach, dispatch, [a](Session& s) {
    return CallAndEmit(s, "container.attach", json{{"name", *a}}, PrintContainer);
  });

  OnParsed(
      container->add_subcommand("list", "Your containers (root: everyone's)"), dispatch,
      [](Session& s) { return CallAndEmit(s, "container.list", nullptr, PrintContainerList); });

  auto i = std::make_shared<RefOptions>();
  CLI::App* info = container->add_subcommand("info", "A container and its mappings");
  info->add_option("container", i->container, "container id or name")->required();
  OnParsed(info, dispatch, [i](Session& s) { return Info(s, *i); });

  auto d = std::make_shared<RefOptions>();
  CLI::App* destroy =
      container->add_subcommand("destroy", "Unmap everything in a container and release it");
  destroy->add_option("container", d->container, "container id or name")->required();
  OnParsed(destroy, dispatch, [d](Session& s) { return Destroy(s, *d); });
}

}  // namespace vfiod::vfioctl
