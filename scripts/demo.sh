#!/usr/bin/env bash
# The main job, end to end: install what is missing, build vfiod, boot a QEMU
# guest with a real VFIO stack (emulated Intel IOMMU, QEMU's edu device), start
# vfiod there as root, and drive it as an unprivileged user with vfioctl and
# the example driver (scripts/demo-guest.sh runs inside the guest).
#
#   ./scripts/demo.sh            (as root on a fresh Debian 12)
#
# VFIOD_BUILD_DIR chooses the build tree (default: build).
#
# Exit status: 0 when every step of the guest session worked; 77 when the VM
# cannot be had on this machine (no QEMU or guest kernel package).
set -euo pipefail
cd "$(dirname "$0")/.."

build=${VFIOD_BUILD_DIR:-build}
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "Installing build and VM dependencies (Debian packages; skipped when present)"
./scripts/deps.sh

say "Building vfiod, vfioctl and the edu_dma example ($build/)"
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" -j"$(nproc)" --target vfiod vfioctl edu_dma

say "Booting the test VM and running the demo inside it"
echo "QEMU (q35, intel-iommu, edu, ivshmem, NVMe) boots Debian's 6.1 kernel; the"
echo "guest shares this machine's / read-only, so it runs the binaries just built."
echo "The first run downloads the guest kernel package; later runs reuse it."
status=0
tests/vm/vm_run.sh --timeout 420 -- scripts/demo-guest.sh "$(realpath "$build")" || status=$?
case $status in
  0) say "Demo finished: every step worked" ;;
  77) say "Demo skipped: the VM cannot run on this machine (see the line above)" ;;
  *) say "Demo FAILED (status $status): see the output above" ;;
esac
exit "$status"
