// The example drivers in the test VM, as uid 65534 on the real kernel, each
// completion signalled by a real interrupt through the client library's irq
// section: edu_dma's DMA round trip by MSI and by INTx (which the kernel
// masks each time: the second transfer only completes if the driver
// unmasked it), edu's absent MSI-X refused; nvme_identify's admin command by
// MSI-X. Each example checks itself that nothing was pending
// before it started the device, and the bytes the device wrote by DMA.
#include <gtest/gtest.h>

#include <cstdlib>

#include "daemon_harness.h"
#include "run_vfioctl.h"

namespace vfiod::vfioctl_test {
namespace {

using itest::Daemon;
using itest::kNobody;
using nlohmann::json;

/// The VM's address of `variable`'s device, or nullptr (then the test skips).
const char* VmDevice(const char* variable) {
  return itest::InVm() && ::geteuid() == 0 ? std::getenv(variable) : nullptr;
}

json NobodyMay(const std::string& bdf) {
  return {{"rules", json::array({{{"users", json::array({kNobody})},
                                  {"devices", json::array({bdf})},
                                  {"quota", {{"locked_bytes", "64M"}}}}})}};
}

bool Has(const RunResult& r, const std::string& text) {
  return r.out.find(text) != std::string::npos || r.err.find(text) != std::string::npos;
}

TEST(EduDmaExampleVm, RoundTripsWithMsiAndIntxAsNobody) {
  const char* edu = VmDevice("VFIOD_EDU_BDF");
  if (edu == nullptr) {
    GTEST_SKIP() << "runs as root inside the test VM (tests/vm/vm_run.sh)";
  }
  Daemon daemon(NobodyMay(edu), "1G");
  RunOptions nobody = AsUid(kNobody);
  // Its own container, MSI (the default): one interrupt per transfer.
  RunResult msi =
      vfioctl_test::Run(EDU_DMA_BINARY, {"--socket", daemon.socket(), "--bdf", edu}, nobody);
  EXPECT_EQ(msi.exit, 0) << msi.Describe();
  EXPECT_TRUE(Has(msi, "IRQ vectors: INTx 1 MSI 1 MSI-X 0")) << msi.out;
  EXPECT_TRUE(Has(msi, "all 2048 bytes match; 2 MSI interrupts received")) << msi.out;
  // A named container made by vfioctl, 4K pages, INTx.
  ASSERT_EQ(
      Vfioctl({"--socket", daemon.socket(), "container", "create", edu, "--name", "demo"}, nobody)
          .exit,
      0);
  RunResult intx =
      vfioctl_test::Run(EDU_DMA_BINARY,
                        {"--socket", daemon.socket(), "--bdf", edu, "--container", "demo",
                         "--backing", "4k", "--size", "64K", "--bytes", "4000", "--irq", "intx"},
                        nobody);
  EXPECT_EQ(intx.exit, 0) << intx.Describe();
  EXPECT_TRUE(Has(intx, "all 4000 bytes match; 2 INTx interrupts received")) << intx.out;
  EXPECT_TRUE(Has(intx, "named container 'demo'")) << intx.out;
  // edu has no MSI-X: refused by the library from what the kernel reports.
  RunResult msix = vfioctl_test::Run(
      EDU_DMA_BINARY,
      {"--socket", daemon.socket(), "--bdf", edu, "--container", "demo", "--irq", "msix"}, nobody);
  EXPECT_EQ(msix.exit, 1) << msix.Describe();
  EXPECT_TRUE(Has(msix, "offers 0 MSI-X vectors")) << msix.Describe();
}

TEST(NvmeIdentifyExampleVm, AdminCommandCompletesByMsixAsNobody) {
  const char* nvme = VmDevice("VFIOD_NVME_BDF");
  if (nvme == nullptr) {
    GTEST_SKIP() << "runs as root inside the test VM (tests/vm/vm_run.sh)";
  }
  Daemon daemon(NobodyMay(nvme), "1G");
  // MSI-X (INTx works too, and is left out to keep the guest time short:
  // edu's run covers it).
  RunResult r = vfioctl_test::Run(NVME_IDENTIFY_BINARY,
                                  {"--socket", daemon.socket(), "--bdf", nvme, "--irq", "msix"},
                                  AsUid(kNobody));
  EXPECT_EQ(r.exit, 0) << r.Describe();
  EXPECT_TRUE(Has(r, "nothing pending before the doorbell")) << r.out;
  EXPECT_TRUE(Has(r, "MSI-X vector 0 fired")) << r.out;
  // The serial vm_run.sh gives the controller, read back by DMA.
  EXPECT_TRUE(Has(r, "vendor 0x1b36, serial 'vfiod-vm', model 'QEMU NVMe Ctrl'")) << r.out;
}

}  // namespace
}  // namespace vfiod::vfioctl_test
