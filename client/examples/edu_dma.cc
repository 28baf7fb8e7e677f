// edu_dma: an example user-space driver built only on vfiod's client library.
//
// It asks vfiod (running as root) for everything privileged: a VFIO container
// holding the edu device's IOMMU group, the device fd, and DMA memory mapped
// in the IOMMU below edu's 28-bit DMA limit. Then it drives the device itself
// on that fd: BAR0 registers, bus mastering, its interrupt on an eventfd
// (MSI or INTx, through the client library's irq section), and a DMA round
// trip RAM -> device -> RAM whose bytes it checks. It needs no privileges:
// run it as any user the daemon's policy lets use the device.
//
//   edu_dma --bdf 0000:00:01.0                  # own (unnamed) container, MSI
//   edu_dma --bdf 0000:00:01.0 --container demo  # a named container made by vfioctl
//   edu_dma --bdf 0000:00:01.0 --irq intx        # INTx: acknowledged, then unmasked
//   edu_dma --bdf 0000:00:01.0 --irq msix        # fails: edu has no MSI-X
//   edu_dma --bdf 0000:00:01.0 --hold            # then wait for a release request
//   edu_dma --bdf 0000:00:01.0 --across-restart  # then DMA on through a restart of vfiod
#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <optional>
#include <string>
#include <type_traits>

#include "client/vfiod_client.h"
#include "client/vfiod_irq.h"
#include "die.h"
#include "edu_regs.h"
#include "hold_device.h"
#include "proto/backing.h"

namespace vfiod::examples {
namespace {

using nlohmann::json;

struct Options {
  std::string socket = "/run/vfiod/vfiod.sock";
  std::string bdf;
  std::string container;  // a named container to use; empty: create one
  std::string backing{wire::BackingName(wire::Backing::kHugetlb2M)};
  uint64_t size = 2 << 20;
  uint32_t bytes = 2048;
  client::IrqIndex irq = client::IrqIndex::kMsi;
  bool hold = false;            // keep the device until the kernel asks for it back
  bool across_restart = false;  // keep the session, DMA on through a restart
};

void Step(const char* what) { std::printf("==> %s\n", what); }

// The container to work in: a named one (found among ours, else attached) or
// a new one holding the device's group.
uint64_t GetContainer(client::Client& c, const Options& o) {
  if (o.container.empty()) {
    json r = CallOrDie(c, "container.create", json{{"devices", {o.bdf}}}).result;
    std::printf("    container %llu created, groups %s (released when we disconnect)\n",
                static_cast<unsigned long long>(r["container"].get<uint64_t>()),
                r["groups"].dump().c_str());
    return r["container"].get<uint64_t>();
  }
  for (const json& entry : CallOrDie(c, "container.list", nullptr).result) {
    if (entry.value("name", "") == o.container) {
      std::printf("    using named container '%s' (id %llu)\n", o.container.c_str(),
                  static_cast<unsigned long long>(entry["container"].get<uint64_t>()));
      return entry["container"].get<uint64_t>();
    }
  }
  json r = CallOrDie(c, "container.attach", json{{"name", o.container}}).result;
  std::printf("    attached named container '%s' (id %llu)\n", o.container.c_str(),
              static_cast<unsigned long long>(r["container"].get<uint64_t>()));
  return r["container"].get<uint64_t>();
}

// What the device offers at each index (VFIO_DEVICE_GET_IRQ_INFO).
void PrintIrqInfo(const EduDevice& edu) {
  std::printf("    IRQ vectors:");
  for (auto index : {client::IrqIndex::kIntx, client::IrqIndex::kMsi, client::IrqIndex::kMsix}) {
    auto info = edu.IrqInfo(index);
    std::printf(" %s %s", client::IrqIndexName(index),
                info ? std::to_string(info->count).c_str() : "?");
  }
  std::printf("\n");
}

// A DMA round trip through the mapping at `iova` (RAM holds it mapped):
// `o.bytes` of a pattern made from `seed` to the device's buffer and back
// into the second half; dies unless every byte came back.
void RoundTrip(EduDevice& edu, const MappedMemory& ram, uint64_t iova, const Options& o,
               uint8_t seed) {
  const char* irq = client::IrqIndexName(o.irq);
  const uint64_t back = o.size / 2;  // the copy comes back into the second half
  for (uint32_t i = 0; i < o.bytes; ++i) {
    ram.data()[i] = static_cast<uint8_t>(i * 7 + seed);
  }
  std::memset(ram.data() + back, 0, o.bytes);
  auto timeout = std::chrono::seconds(10);
  OrDie(edu.Dma(Direction::kToDevice, iova, o.bytes, timeout));
  std::printf("    %u bytes IOVA 0x%llx -> device: done (%s)\n", o.bytes,
              static_cast<unsigned long long>(iova), irq);
  const uint64_t back_iova = iova + back;
  OrDie(edu.Dma(Direction::kFromDevice, back_iova, o.bytes, timeout));
  std::printf("    %u bytes device -> IOVA 0x%llx: done (%s)\n", o.bytes,
              static_cast<unsigned long long>(back_iova), irq);
  if (std::memcmp(ram.data(), ram.data() + back, o.bytes) != 0) {
    Die("the bytes that came back differ from the bytes sent");
  }
  std::printf("    all %u bytes match; %llu %s interrupts received\n", o.bytes,
              static_cast<unsigned long long>(edu.interrupts()), irq);
}

// --across-restart: vfiod goes away (a restart: `vfioctl daemon restart`, a
// crash under systemd) while this driver keeps its device fd and the mapping's
// memory. DMA goes on through the mapping while vfiod is gone (the container
// and its IOMMU mappings live on in systemd's fd store); the next vfiod gives
// the session back (Client::KeepSession) with the mapping at the same IOVA,
// and DMA through it still works. Dies on any difference.
void AcrossRestart(client::Client& c, EduDevice& edu, const MappedMemory& ram, uint64_t iova,
                   uint64_t mapping, const Options& o) {
  Step("wait for vfiod to go away (a restart); the device and the memory stay ours");
  std::printf("    waiting for vfiod to restart\n");
  (void)std::fflush(stdout);
  while (c.PollNotifications(client::kNoTimeout)) {
  }
  Step("vfiod is gone: DMA through the mapping it made, while it restarts");
  RoundTrip(edu, ram, iova, o, 5);
  Step("the new vfiod gives the session back, with the mapping where it was");
  json info = CallOrDie(c, "dma.info", json{{"mapping", mapping}}).result;
  const uint64_t now = info["iova"].get<uint64_t>();
  if (now != iova) {
    Die("the mapping moved from IOVA " + std::to_string(iova) + " to " + std::to_string(now));
  }
  std::printf("    mapping %llu is still at IOVA 0x%llx\n",
              static_cast<unsigned long long>(mapping), static_cast<unsigned long long>(now));
  RoundTrip(edu, ram, iova, o, 11);
  std::printf("edu_dma: DMA went on through the restart\n");
}

int Run(const Options& o) {
  Step("connect to vfiod");
  auto connected = client::Client::Connect(o.socket);
  if (!connected) {
    Die("cannot reach vfiod at " + o.socket + ": " + connected.error().message());
  }
  client::Client& c = *connected;
  std::printf("    connected to %s as uid %u\n", o.socket.c_str(), ::getuid());
  if (o.across_restart) {
    auto kept = c.KeepSession({.on_resumed = [](const json& resumed) {
      std::printf("    session resumed after a restart of vfiod: %s\n", resumed.dump().c_str());
    }});
    if (!kept) {
      Die("session.info: " + kept.error().Describe());
    }
  }

  Step("get a VFIO container holding the device's IOMMU group");
  const uint64_t container = GetContainer(c, o);

  Step("open the device: vfiod passes its VFIO device fd over the socket");
  client::Response opened =
      CallOrDie(c, "device.open", json{{"container", container}, {"bdf", o.bdf}});
  if (opened.fds.empty()) {
    Die("device.open returned no fd");
  }
  std::printf("    device fd %d: %s regions, %s IRQ types\n", opened.fds[0].get(),
              opened.result["num_regions"].dump().c_str(),
              opened.result["num_irqs"].dump().c_str());
  EduDevice edu = OrDie(EduDevice::Open(std::move(opened.fds[0])));
  std::printf("    BAR0 mapped; ident 0x%08x, liveness(0x12345678) -> 0x%08x\n", edu.Ident(),
              edu.Liveness(0x12345678));

  Step("enable bus mastering (PCI command register, via the VFIO config region)");
  OrDie(edu.EnableBusMaster());
  const char* irq = client::IrqIndexName(o.irq);
  std::printf("==> route edu's %s to an eventfd (the client library's irq section)\n", irq);
  PrintIrqInfo(edu);
  OrDie(edu.EnableIrq(o.irq));

  Step("allocate DMA memory in vfiod, below edu's 28-bit DMA limit");
  client::Response alloc = CallOrDie(c, "dma.alloc",
                                     json{{"container", container},
                                          {"size", o.size},
                                          {"backing", o.backing},
                                          {"dma_mask_bits", kEduDmaMaskBits}});
  if (alloc.fds.empty()) {
    Die("dma.alloc returned no memfd");
  }
  const uint64_t iova = alloc.result["iova"].get<uint64_t>();
  const uint64_t mapping = alloc.result["mapping"].get<uint64_t>();
  std::printf("    mapping %llu: %llu bytes of %s at IOVA 0x%llx, memfd %d\n",
              static_cast<unsigned long long>(mapping), static_cast<unsigned long long>(o.size),
              o.backing.c_str(), static_cast<unsigned long long>(iova), alloc.fds[0].get());
  MappedMemory ram = OrDie(MappedMemory::Map(alloc.fds[0].get(), o.size, 0));

  std::printf("==> DMA round trip: RAM -> device buffer -> RAM, completion signalled by %s\n", irq);
  RoundTrip(edu, ram, iova, o, 3);

  if (o.hold) {
    Step("hold the device until the kernel wants it back (an unbind: device.release_requested)");
    auto asked = AwaitReleaseRequest(c, o.bdf);
    if (!asked) {
      Die("the connection to vfiod ended while holding the device");
    }
    std::printf("    %s\n", asked->reason.c_str());
    { EduDevice released = std::move(edu); }  // interrupt off, BAR0 unmapped, fd closed
    std::printf("    device fd closed: the unbind of %s can complete\nedu_dma: released\n",
                o.bdf.c_str());
    return 0;
  }

  if (o.across_restart) {
    AcrossRestart(c, edu, ram, iova, mapping, o);
  }

  std::printf("==> clean up: %s off, memory unmapped, mapping freed\n", irq);
  OrDie(edu.DisableIrq());
  json freed = CallOrDie(c, "dma.free", json{{"mapping", mapping}}).result;
  std::printf("    vfiod unmapped %s bytes\n", freed["unmapped_bytes"].dump().c_str());
  std::printf("edu_dma: OK\n");
  return 0;
}

}  // namespace
}  // namespace vfiod::examples

int main(int argc, char** argv) {
  vfiod::examples::SetProgramName("edu_dma");
  try {
    vfiod::examples::Options o;
    CLI::App app{"edu_dma: DMA round trip with QEMU's edu device through vfiod"};
    app.add_option("--socket", o.socket, "vfiod's socket")
        ->envname("VFIOD_SOCKET")
        ->capture_default_str();
    app.add_option("--bdf", o.bdf, "the edu device's PCI address")
        ->envname("VFIOD_EDU_BDF")
        ->required();
    app.add_option("--container", o.container, "use this named container instead of a new one");
    app.add_option("--backing", o.backing, "DMA memory backing")
        ->check(CLI::IsMember(vfiod::wire::AllocBackingNames()))
        ->capture_default_str();
    app.add_option("--size", o.size,
                   "bytes of DMA memory, e.g. 64K, 2M (a multiple of the page size)")
        ->transform(CLI::AsSizeValue(false))
        ->capture_default_str();
    app.add_option("--bytes", o.bytes, "bytes per transfer")
        ->check(CLI::Range(1u, vfiod::examples::kEduMaxTransfer))
        ->capture_default_str();
    app.add_flag("--hold", o.hold,
                 "after the round trip, keep the device until the kernel wants it back "
                 "(device.release_requested), then close it");
    app.add_flag("--across-restart", o.across_restart,
                 "after the round trip, keep the session, wait until vfiod restarts, and "
                 "DMA again while it is gone and after it is back");
    std::string irq = "msi";
    app.add_option("--irq", irq, "the interrupt that signals completion: msi, intx, msix")
        ->check(CLI::IsMember(vfiod::examples::IrqNames()))
        ->capture_default_str();
    try {
      app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
      return app.exit(e);
    }
    o.irq = vfiod::examples::IrqNames().at(irq);
    return vfiod::examples::Run(o);
  } catch (const std::exception& e) {
    // JSON access on a reply of an unexpected shape; the last line of defence.
    (void)std::fprintf(stderr, "edu_dma: fatal: %s\n", e.what());
    return 1;
  }
}
