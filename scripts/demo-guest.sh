#!/usr/bin/env bash
# The guest half of scripts/demo.sh: runs as root inside the test VM
# (tests/vm/vm_run.sh exports VFIOD_EDU_BDF etc.). Starts vfiod on the real
# VFIO stack, then runs a short session as uid 65534 ("nobody"), who has no
# access to /dev/vfio of its own and gets everything through vfiod.
#
#   scripts/demo-guest.sh BUILD_DIR
set -euo pipefail
build=${1:?usage: demo-guest.sh BUILD_DIR}
vfiod=$build/daemon/vfiod
vfioctl=$build/client/vfioctl/vfioctl
edu_dma=$build/client/examples/edu_dma
edu=${VFIOD_EDU_BDF:?not in the test VM: run scripts/demo.sh}
nonviable=${VFIOD_NONVIABLE_BDF:-0000:00:1f.3}
work=/tmp/vfiod-demo
sock=/run/vfiod/vfiod.sock
user=65534

step() { printf '\n\033[1m--- %s\033[0m\n' "$1"; shift; printf '    %s\n' "$@"; }
# Runs a command as the unprivileged user, showing it first.
as_user() {
  printf '\033[2m$ %s\033[0m\n' "$(basename "$1") ${*:2}"
  setpriv --reuid=$user --regid=$user --clear-groups -- "$@"
}

mkdir -p "$work" /run/vfiod
chmod 0755 /run/vfiod
# The policy: uid 65534 may use the edu device, with 256 MiB of locked memory.
# The socket is 0666 here because the guest's /etc is read-only (no vfio-users
# group can be made); a host uses the shipped config's group instead.
cat >"$work/vfiod.json" <<JSON
{
  "socket": {"path": "$sock", "group": null, "mode": "0666"},
  "kernel": "linux",
  "logging": {"level": "info", "target": "stderr"},
  "policy": {
    "rules": [{"users": [$user], "devices": ["$edu"],
               "quota": {"locked_bytes": "256M", "mappings": 64, "containers": 2}}],
    "root_only": ["device.unbind"]
  }
}
JSON

step "Starting vfiod (as root) on the guest's real VFIO stack" \
  "The daemon opens /dev/vfio for its clients; they never touch it themselves."
"$vfiod" --config "$work/vfiod.json" --foreground 2>"$work/vfiod.log" &
daemon=$!
stop_daemon() {
  kill "$daemon" 2>/dev/null || true
  wait "$daemon" 2>/dev/null || true
}
trap stop_daemon EXIT
for _ in $(seq 100); do
  "$vfioctl" --socket "$sock" ping >/dev/null 2>&1 && break
  sleep 0.1
done
"$vfioctl" --socket "$sock" ping
export VFIOD_SOCKET=$sock

group=$(basename "$(readlink "/sys/bus/pci/devices/$edu/iommu_group")")
step "Who we are" \
  "Everything below runs as uid $user. The edu device's VFIO group file" \
  "/dev/vfio/$group belongs to root, so this user cannot open it itself:"
as_user id
ls -l "/dev/vfio/$group"
if as_user sh -c "exec 3<>/dev/vfio/$group" 2>&1; then
  echo "unexpected: uid $user opened /dev/vfio/$group directly" >&2
  exit 1
fi
echo "    -> so it asks vfiod for everything instead."

step "vfiod status" "Which kernel it drives and which IOMMU features it found."
as_user "$vfioctl" status

step "PCI devices" "What vfiod sees, and which devices the policy lets this user use."
as_user "$vfioctl" device list

step "Creating a named container with the edu device" \
  "A container is one IOMMU address space. Named, it outlives this command."
as_user "$vfioctl" container create "$edu" --name demo

step "Allocating 4 MiB of DMA memory on 2 MiB huge pages" \
  "vfiod allocates, pins and maps it below edu's 28-bit DMA limit in one go."
as_user "$vfioctl" dma alloc demo 4M --backing hugetlb-2m --dma-mask-bits 28 --name demo-buf

step "Where that memory is physically" \
  "vfiod reads the page frames: each 2 MiB page is one folio."
as_user "$vfioctl" dma info demo-buf

step "The example driver (client/examples/edu_dma.cc) does DMA through vfiod" \
  "It gets the device fd and a DMA buffer from vfiod, then drives edu itself:" \
  "BAR0 registers, bus mastering, MSI on an eventfd, a RAM->device->RAM copy."
as_user "$edu_dma" --bdf "$edu" --container demo --backing hugetlb-2m

step "The container now" "The example's mapping was freed when it finished; demo-buf stays."
as_user "$vfioctl" container info demo

step "The policy at work" \
  "A device the policy does not grant is refused (exit status 3), with the reason:"
if as_user "$vfioctl" container create "$nonviable"; then
  echo "unexpected: the policy allowed it" >&2
  exit 1
else
  echo "    -> refused, exit status $?"
fi

step "Daemon statistics" "Requests per method, and how many MAP_DMA ioctls the maps took."
as_user "$vfioctl" stats

step "Cleaning up" "Destroying the container unmaps everything in it."
as_user "$vfioctl" container destroy demo

step "What vfiod logged" \
  "The daemon's own account of the session (connection chatter left out):"
grep -vE 'rpc: connection [0-9]+ (from|closed)|0 containers released, 0 mappings' \
  "$work/vfiod.log" | tail -n 15

printf '\n\033[1mDemo complete.\033[0m\n'
