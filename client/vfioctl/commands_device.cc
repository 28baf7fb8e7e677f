// `vfioctl device list|info|bind|unbind|open`.
#include <string>

#include "vfioctl/commands.h"
#include "vfioctl/format.h"
#include "vfioctl/sizes.h"
#include "vfioctl/table.h"

namespace vfiod::vfioctl {

using nlohmann::json;

namespace {

void PrintDeviceList(std::ostream& out, const json& devices) {
  Table table({"BDF", "ID", "CLASS", "DRIVER", "GROUP", "VIABLE", "NUMA", "PERMITTED"});
  for (const json& d : devices) {
    std::string id = Field(d, "vendor") + ":" + Field(d, "device");
    std::string driver = Field(d, "driver");
    table.AddRow({Field(d, "bdf"), id, Field(d, "class"), driver.empty() ? "-" : driver,
                  Field(d, "iommu_group"), Field(d, "viable"), Field(d, "numa_node"),
                  Field(d, "permitted")});
  }
  if (table.empty()) {
    out << "no PCI devices visible\n";
    return;
  }
  table.Print(out);
}

void PrintBars(std::ostream& out, const json& bars) {
  Table table({"BAR", "SIZE", "TYPE"});
  for (const json& b : bars) {
    std::string type = b.value("mem", false) ? "memory" : "I/O";
    type += b.value("is64", false) ? " 64-bit" : "";
    type += b.value("prefetch", false) ? " prefetchable" : "";
    table.AddRow({Field(b, "index"), SizeField(b, "size"), type});
  }
  table.Print(out);
}

void PrintRegions(std::ostream& out, const json& regions) {
  Table table({"REGION", "SIZE", "FLAGS", "MMAP", "SPARSE"});
  for (const json& r : regions) {
    std::string sparse;
    for (const json& a : Member(r, "sparse")) {
      sparse += (sparse.empty() ? "" : " ") + HexField(a, "offset") + "+" + SizeField(a, "size");
    }
    table.AddRow({Field(r, "index"), SizeField(r, "size"), HexField(r, "flags"), Field(r, "mmap"),
                  sparse.empty() ? "-" : sparse});
  }
  table.Print(out);
}

void PrintIrqs(std::ostream& out, const json& irqs) {
  static constexpr const char* kNames[] = {"INTx", "MSI", "MSI-X", "ERR", "REQ"};
  Table table({"IRQ", "TYPE", "COUNT", "FLAGS"});
  for (const json& i : irqs) {
    uint64_t index = i.value("index", uint64_t{99});
    table.AddRow({Field(i, "index"), index < 5 ? kNames[index] : "-", Field(i, "count"),
                  HexField(i, "flags")});
  }
  table.Print(out);
}

void PrintDeviceInfo(std::ostream& out, const json& d) {
  PrintField(out, "device", Field(d, "bdf"));
  PrintField(out, "id",
             Field(d, "vendor") + ":" + Field(d, "device") + " (subsystem " +
                 Field(d, "subsystem_vendor") + ":" + Field(d, "subsystem_device") + ")");
  PrintField(out, "class", Field(d, "class"));
  std::string driver = Field(d, "driver");
  PrintField(out, "driver", driver.empty() ? "(none)" : driver);
  std::string override_ = Field(d, "driver_override");
  PrintField(out, "driver_override", override_.empty() ? "(none)" : override_);
  PrintField(out, "iommu group", Field(d, "iommu_group"));
  std::string members;
  for (const json& m : Member(d, "group_members")) {
    std::string drv = Field(m, "driver");
    members += (members.empty() ? "" : ", ") + Field(m, "bdf") + " (" +
               (drv.empty() ? "no driver" : drv) + ")";
  }
  PrintField(out, "group members", members.empty() ? "-" : members);
  PrintField(out, "viable", Field(d, "viable"));
  PrintField(out, "numa node", Field(d, "numa_node"));
  PrintField(out, "permitted", Field(d, "permitted"));
  out << '\n';
  PrintBars(out, Member(d, "bars"));
  if (d.contains("regions")) {
    out << '\n';
    PrintRegions(out, d["regions"]);
    out << '\n';
    PrintIrqs(out, Member(d, "irqs"));
  } else {
    out << "\n(VFIO regions and IRQs are shown once the device is bound to vfio-pci and its "
           "group is usable)\n";
  }
}

struct BdfOptions {
  std::string bdf;
};

struct OpenOptions {
  std::string container;
  std::string bdf;
};

CmdResult Open(Session& session, const OpenOptions& o) {
  auto container = session.ResolveContainer(o.container);
  if (!container) {
    return std::unexpected(std::move(container).error());
  }
  json params = {{"container", *container}, {"bdf", o.bdf}};
  return CallAndEmit(session, "device.open", params, [&](std::ostream& out, const json& r) {
    out << "opened " << Field(r, "bdf") << " in container " << *container << ": "
        << Field(r, "num_regions") << " regions, " << Field(r, "num_irqs") << " IRQ types, flags "
        << HexField(r, "flags") << "\n"
        << "reset before the hand-over: " << Field(r, "reset") << "\n"
        << "(the device fd vfiod passed is closed when vfioctl exits; a driver keeps it open)\n";
  });
}

}  // namespace

void AddDeviceCommands(CLI::App& app, Dispatch& dispatch) {
  CLI::App* device = app.add_subcommand("device", "PCI devices: list, inspect, bind, open");
  device->require_subcommand(1);

  OnParsed(device->add_subcommand("list", "Devices vfiod can see, and whether you may use them"),
           dispatch,
           [](Session& s) { return CallAndEmit(s, "device.list", nullptr, PrintDeviceList); });

  auto add_bdf_verb = [&](const char* verb, const char* help, const char* method,
                          void (*human)(std::ostream&, const json&)) {
    auto o = std::make_shared<BdfOptions>();
    CLI::App* sub = device->add_subcommand(verb, help);
    sub->add_option("bdf", o->bdf, "PCI address, e.g. 0000:00:03.0")->required();
    OnParsed(sub, dispatch, [o, method, human](Session& s) {
      return CallAndEmit(s, method, json{{"bdf", o->bdf}}, human);
    });
  };
  add_bdf_verb("info", "Everything about one device: ids, group, BARs, VFIO regions, IRQs",
               "device.info", PrintDeviceInfo);
  add_bdf_verb("bind", "Bind a device to vfio-pci (needs may_bind in the policy, or root)",
               "device.bind", [](std::ostream& out, const json& r) {
                 out << Field(r, "bdf") << " is bound to " << Field(r, "driver")
                     << (r.value("viable", false) ? "; its IOMMU group is viable\n"
                                                  : "; its IOMMU group is NOT viable (another "
                                                    "member has a host driver)\n");
               });
  add_bdf_verb("unbind", "Give a device back to its host driver", "device.unbind",
               [](std::ostream& out, const json& r) {
                 std::string driver = Field(r, "driver");
                 out << Field(r, "bdf") << " is now bound to "
                     << (driver.empty() ? "no driver" : driver) << '\n';
               });
  add_bdf_verb(
      "reset",
      "Reset a device whose group is in a container you may use (function reset, else "
      "a hot reset of its bus)",
      "device.reset", [](std::ostream& out, const json& r) {
        out << Field(r, "bdf") << " reset ("
            << (Field(r, "method") == "hot" ? "hot reset of its slot or bus" : "function reset")
            << ")\n";
      });

  auto o = std::make_shared<OpenOptions>();
  CLI::App* open = device->add_subcommand(
      "open", "Open a device through a container (checks that the device fd can be had)");
  open->add_option("container", o->container, "container id or name")->required();
  open->add_option("bdf", o->bdf, "PCI address")->required();
  OnParsed(open, dispatch, [o](Session& s) { return Open(s, *o); });
}

}  // namespace vfiod::vfioctl
