// `vfioctl container create|attach|share|unshare|list|info|destroy`.
//
// A container belongs to the connection that made it, and vfioctl's
// connection ends when the command does: an unnamed container is released the
// moment `container create` returns. Give it --name to keep it until
// `container destroy`; every other command accepts the name in place of the
// id. Names are per user: a name is always one of yours unless --owner names
// another user, whose container must then be shared with you.
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

std::string SharedText(const json& c) {
  std::string text;
  const json& with = Member(c, "shared_with");
  for (const json& u : Member(with, "users")) {
    text += (text.empty() ? "uid " : ", uid ") + u.dump();
  }
  for (const json& g : Member(with, "groups")) {
    text += (text.empty() ? "gid " : ", gid ") + g.dump();
  }
  return text.empty() ? "-" : text;
}

void PrintContainer(std::ostream& out, const json& c) {
  std::string name = Field(c, "name");
  PrintField(out, "container",
             Field(c, "container") + (name.empty() ? " (unnamed)" : " '" + name + "' (named)"));
  PrintField(out, "owner", "uid " + Field(c, "owner_uid"));
  PrintField(out, "shared with", SharedText(c));
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

/// A user or group as given on the command line: a number stays a number.
json IdOrName(const std::string& text) { return IsId(text) ? json(std::stoull(text)) : json(text); }

json IdsOrNames(const std::vector<std::string>& list) {
  json out = json::array();
  for (const auto& item : list) {
    out.push_back(IdOrName(item));
  }
  return out;
}

struct CreateOptions {
  std::vector<std::string> devices;
  std::string name;
  std::vector<std::string> users;
  std::vector<std::string> groups;
};

CmdResult Create(Session& session, const CreateOptions& o) {
  json params = {{"devices", o.devices}};
  if (!o.name.empty()) {
    params["name"] = o.name;
  }
  if (!o.users.empty() || !o.groups.empty()) {
    params["share_with"] = {{"users", IdsOrNames(o.users)}, {"groups", IdsOrNames(o.groups)}};
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

struct ShareOptions {
  std::string container;
  std::vector<std::string> users;
  std::vector<std::string> groups;
};

CmdResult Share(Session& session, const ShareOptions& o, const char* method) {
  if (o.users.empty() && o.groups.empty()) {
    return std::unexpected(Failure{Exit::kUsage, "name at least one --user or --group"});
  }
  auto id = session.ResolveContainer(o.container);
  if (!id) {
    return std::unexpected(std::move(id).error());
  }
  json params = {{"container", *id}};
  if (!o.users.empty()) {
    params["users"] = IdsOrNames(o.users);
  }
  if (!o.groups.empty()) {
    params["groups"] = IdsOrNames(o.groups);
  }
  return CallAndEmit(session, method, params, PrintContainer);
}

CLI::App* AddShareCommand(CLI::App* container, Dispatch& dispatch, const char* verb,
                          const char* method, const char* help) {
  auto o = std::make_shared<ShareOptions>();
  CLI::App* sub = container->add_subcommand(verb, help);
  sub->add_option("container", o->container, "container id or name")->required();
  sub->add_option("--user,-u", o->users, "a user (name or uid); repeatable");
  sub->add_option("--group,-g", o->groups, "a group (name or gid); repeatable");
  OnParsed(sub, dispatch, [o, method](Session& s) { return Share(s, *o, method); });
  return sub;
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
                     "keep the container after vfioctl exits, under this name (yours alone)");
  create->add_option("--share-user", c->users,
                     "let this user (name or uid) use it too, if the policy permits; repeatable");
  create->add_option("--share-group", c->groups,
                     "let this group's members (name or gid) use it too; repeatable");
  OnParsed(create, dispatch, [c](Session& s) { return Create(s, *c); });

  auto a = std::make_shared<std::string>();
  CLI::App* attach = container->add_subcommand(
      "attach",
      "Check that a named container can be used: one of yours, or --owner's if shared with you "
      "(policy: all its devices)");
  attach->add_option("name", *a, "container name")->required();
  OnParsed(attach, dispatch, [a](Session& s) {
    json params = {{"name", *a}};
    if (!s.options().owner.empty()) {
      params["owner"] = IdOrName(s.options().owner);
    }
    return CallAndEmit(s, "container.attach", params, PrintContainer);
  });

  AddShareCommand(container, dispatch, "share", "container.share",
                  "Let other users or groups use your container (owner or root)");
  AddShareCommand(container, dispatch, "unshare", "container.unshare",
                  "Stop sharing your container with users or groups (their mappings stay)");

  OnParsed(
      container->add_subcommand("list", "Your containers and those shared with you (root: all)"),
      dispatch,
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
