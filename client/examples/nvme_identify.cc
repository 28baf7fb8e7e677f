// nvme_identify: an example user-space NVMe driver built only on vfiod's
// client library, whose completion comes by MSI-X (or INTx).
//
// It asks vfiod for a container holding the controller's IOMMU group, the
// device fd and DMA memory; then it sets up the admin queues in that memory,
// enables the controller, routes the admin completion queue's interrupt
// (vector 0) to an eventfd through the client library's irq section, and
// sends one Identify Controller command. The interrupt must not have fired
// before the doorbell rings and must fire after; the completion entry and
// the 4 KiB the controller wrote by DMA are checked (its PCI vendor id must
// match config space's). It needs no privileges.
//
//   nvme_identify --bdf 0000:00:03.0              # MSI-X vector 0
//   nvme_identify --bdf 0000:00:03.0 --irq intx   # INTx: CQ head rung, then unmasked
#include <CLI/CLI.hpp>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <string>
#include <type_traits>

#include "client/vfiod_client.h"
#include "client/vfiod_irq.h"
#include "device_io.h"
#include "die.h"
#include "nvme_regs.h"
#include "proto/backing.h"

namespace vfiod::examples {
namespace {

using nlohmann::json;

struct Options {
  std::string socket = "/run/vfiod/vfiod.sock";
  std::string bdf;
  client::IrqIndex irq = client::IrqIndex::kMsix;
};

// Where things live in the DMA memory (one 4 KiB page each).
constexpr uint64_t kSq = 0, kCq = 0x1000, kData = 0x2000, kSize = 0x4000;
constexpr uint16_t kCid = 0x2a;
constexpr auto kTimeout = std::chrono::seconds(10);

/// An ASCII field of the identify data, trailing spaces dropped.
std::string Field(const uint8_t* data, size_t from, size_t len) {
  std::string s(reinterpret_cast<const char*>(data + from), len);
  s.erase(s.find_last_not_of(' ') + 1);
  return s;
}

/// Sends Identify Controller and waits for its interrupt; checks that none
/// came before the doorbell, and the completion entry after it.
void Identify(NvmeController& nvme, uint8_t* mem, uint64_t iova, const char* irq) {
  NvmeCommand cmd;
  cmd.cdw0 = 0x06u | (uint32_t{kCid} << 16);  // Identify
  cmd.prp1 = iova + kData;
  cmd.cdw10 = 1;  // CNS 1: the controller
  std::memset(mem, 0, kSize);
  std::memcpy(mem + kSq, &cmd, sizeof(cmd));
  std::atomic_thread_fence(std::memory_order_seq_cst);
  auto early = nvme.irq().TryConsume(0);
  if (early || early.error().code != EAGAIN) {
    Die(early ? "an interrupt came before the command was submitted" : early.error().message());
  }
  std::printf("    nothing pending before the doorbell; submitting Identify\n");
  OrDie(nvme.Submit());
  const uint64_t n = OrDie(nvme.irq().Wait(0, kTimeout));
  std::printf("    %s vector 0 fired (%llu)\n", irq, static_cast<unsigned long long>(n));
  NvmeCompletion done;
  std::memcpy(&done, mem + kCq, sizeof(done));
  if ((done.status & 0x10000u) == 0) {
    Die("interrupt received but the completion entry is not posted");
  }
  if ((done.status & 0xffffu) != kCid || (done.status >> 17) != 0) {
    Die("completion: command id " + std::to_string(done.status & 0xffffu) + ", status " +
        std::to_string(done.status >> 17));
  }
  OrDie(nvme.Complete());
}

int Run(const Options& o) {
  auto connected = client::Client::Connect(o.socket);
  if (!connected) {
    Die("cannot reach vfiod at " + o.socket + ": " + connected.error().message());
  }
  client::Client& c = *connected;
  std::printf("==> container and device fd from vfiod\n");
  json made = CallOrDie(c, "container.create", json{{"devices", {o.bdf}}}).result;
  const uint64_t container = made["container"].get<uint64_t>();
  client::Response opened =
      CallOrDie(c, "device.open", json{{"container", container}, {"bdf", o.bdf}});
  if (opened.fds.empty()) {
    Die("device.open returned no fd");
  }
  const int device_fd = opened.fds[0].get();
  NvmeController nvme = OrDie(NvmeController::Open(std::move(opened.fds[0])));
  const uint16_t vendor = OrDie(nvme.VendorId());
  std::printf("    container %llu, device fd %d, PCI vendor 0x%04x\n",
              static_cast<unsigned long long>(container), device_fd, vendor);

  std::printf("==> %llu bytes of DMA memory for the admin queues and the identify data\n",
              static_cast<unsigned long long>(kSize));
  client::Response alloc = CallOrDie(c, "dma.alloc",
                                     json{{"container", container},
                                          {"size", kSize},
                                          {"backing", wire::BackingName(wire::Backing::k4K)}});
  if (alloc.fds.empty()) {
    Die("dma.alloc returned no memfd");
  }
  const uint64_t iova = alloc.result["iova"].get<uint64_t>();
  MappedMemory mem = OrDie(MappedMemory::Map(alloc.fds[0].get(), kSize, 0));

  const char* irq = client::IrqIndexName(o.irq);
  std::printf("==> enable the controller; its admin completions signal %s\n", irq);
  OrDie(nvme.EnableBusMaster());
  // The interrupt first: QEMU's controller ties the admin queue to MSI-X
  // vector 0 when it is enabled, and only if MSI-X is on by then.
  OrDie(nvme.EnableIrq(o.irq));
  OrDie(nvme.Enable(iova + kSq, iova + kCq, kTimeout));
  std::printf("    %s: %u vectors offered, vector 0 on eventfd %d\n", irq, nvme.irq().info().count,
              nvme.irq().eventfd(0));

  std::printf("==> Identify Controller, completion by %s\n", irq);
  Identify(nvme, mem.data(), iova, irq);
  uint16_t id_vendor = 0;
  std::memcpy(&id_vendor, mem.data() + kData, sizeof(id_vendor));
  if (id_vendor != vendor) {
    Die("identify data: vendor " + std::to_string(id_vendor) + ", config space says " +
        std::to_string(vendor));
  }
  std::printf("    identify: vendor 0x%04x, serial '%s', model '%s'\n", id_vendor,
              Field(mem.data() + kData, 4, 20).c_str(), Field(mem.data() + kData, 24, 40).c_str());

  std::printf("==> clean up: controller off, %s off, mapping freed\n", irq);
  OrDie(nvme.Disable(kTimeout));
  OrDie(nvme.irq().Disable());
  CallOrDie(c, "dma.free", json{{"mapping", alloc.result["mapping"]}});
  std::printf("nvme_identify: OK\n");
  return 0;
}

}  // namespace
}  // namespace vfiod::examples

int main(int argc, char** argv) {
  vfiod::examples::SetProgramName("nvme_identify");
  try {
    vfiod::examples::Options o;
    CLI::App app{"nvme_identify: an NVMe admin command, completed by interrupt, through vfiod"};
    app.add_option("--socket", o.socket, "vfiod's socket")
        ->envname("VFIOD_SOCKET")
        ->capture_default_str();
    app.add_option("--bdf", o.bdf, "the NVMe controller's PCI address")
        ->envname("VFIOD_NVME_BDF")
        ->required();
    std::string irq = "msix";
    app.add_option("--irq", irq, "the interrupt that signals completion: msix, intx, msi")
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
    (void)std::fprintf(stderr, "nvme_identify: fatal: %s\n", e.what());
    return 1;
  }
}
