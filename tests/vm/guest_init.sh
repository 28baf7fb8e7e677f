#!/bin/busybox sh
# shellcheck shell=sh disable=SC3045,SC2013,SC1091  # busybox ash: ulimit -l exists
# /init of the vfiod test guest (busybox ash, PID 1). Built into the initramfs
# by vm_image.sh; driven by vm_run.sh through the "share" 9p folder:
#   in:  share/vm.conf  (AS_USER=uid or empty; PROJECT_DIR=path of a project tree
#        under /tmp or /run, shared as 9p tag "project"; SYSTEMD=1: boot the
#        host's systemd, guest_systemd.sh), share/cmd.sh (the command)
#   out: share/status   (the command's exit status), share/setup_error
#        (why the guest could not run it), share/dmesg.log
# The console is ttyS0; the command's stdout goes to ttyS1, stderr to ttyS2.
# The console line VFIOD_VM_COMMAND_STARTED says the command is about to run.

/bin/busybox --install -s /bin
export PATH=/bin
R=/mnt/host   # the host's / (read-only), chroot of the command
S=/mnt/share  # the per-run writable folder
SHARE_MOUNTED=""

log() { echo "vm-init: [$(cut -d" " -f1 /proc/uptime)] $*"; }

# Stops the guest. ACPI poweroff; if that fails the kernel panics (panic=-1)
# and QEMU exits because of -no-reboot.
halt_guest() {
  sync
  poweroff -f
  sleep 5
  exit 1
}

setup_fail() {
  log "SETUP FAILED: $*"
  if [ -n "$SHARE_MOUNTED" ]; then
    echo "$*" >"$S/setup_error"
    dmesg >"$S/dmesg.log" 2>/dev/null
  fi
  halt_guest
}

mount_basics() {
  mount -t proc proc /proc
  mount -t sysfs sysfs /sys
  mount -t devtmpfs devtmpfs /dev
  mkdir -p /dev/pts /dev/shm /dev/hugepages /dev/hugepages1G
  # What udev would add: bash process substitution needs /dev/fd.
  ln -s /proc/self/fd /dev/fd
  ln -s /proc/self/fd/0 /dev/stdin
  ln -s /proc/self/fd/1 /dev/stdout
  ln -s /proc/self/fd/2 /dev/stderr
  mount -t devpts devpts /dev/pts
  mount -t tmpfs -o mode=1777 shm /dev/shm
  mount -t hugetlbfs -o mode=1777,pagesize=2M hugetlbfs /dev/hugepages
  mount -t hugetlbfs -o mode=1777,pagesize=1G hugetlbfs /dev/hugepages1G
}

load_modules() {
  for m in $(cat /lib/modules/order); do
    insmod "/lib/modules/$m.ko" || log "insmod $m failed"
  done
}

mount_shares() {
  o=trans=virtio,version=9p2000.L,msize=512000
  mount -t 9p -o "$o,cache=none" share "$S" || { log "cannot mount share"; halt_guest; }
  SHARE_MOUNTED=1
  mount -t 9p -o "$o,ro" hostroot "$R" || setup_fail "cannot mount the host's / over 9p"
}

# mount_scratch ROOT RUN_OPTIONS: a fresh tmpfs /tmp and /run (mounted with
# RUN_OPTIONS) in ROOT, the share at ROOT/run/vfiod-vm, and the project tree
# back at its own path (one under the host's /tmp or /run is hidden by those
# tmpfs: vm_run.sh then shares it separately). Both boots use it.
mount_scratch() {
  mount -t tmpfs -o mode=1777 tmp "$1/tmp" || setup_fail "tmpfs /tmp"
  mount -t tmpfs -o "$2" run "$1/run" || setup_fail "tmpfs /run"
  mkdir -p "$1/run/vfiod-vm"
  mount -o bind "$S" "$1/run/vfiod-vm" || setup_fail "bind share"
  if [ -n "$PROJECT_DIR" ]; then
    mkdir -p "$1$PROJECT_DIR" || setup_fail "mkdir $PROJECT_DIR"
    mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000,ro project "$1$PROJECT_DIR" ||
      setup_fail "cannot mount the project tree $PROJECT_DIR"
  fi
}

prepare_chroot() {
  mount -o rbind /dev "$R/dev" || setup_fail "bind /dev"
  mount -o bind /proc "$R/proc" || setup_fail "bind /proc"
  mount -o bind /sys "$R/sys" || setup_fail "bind /sys"
  mount_scratch "$R" mode=0755
}

# find_pci VENDOR DEVICE: first BDF with that vendor:device id.
find_pci() {
  for d in /sys/bus/pci/devices/*; do
    if [ "$(cat "$d/vendor")" = "$1" ] && [ "$(cat "$d/device")" = "$2" ]; then
      basename "$d"
      return 0
    fi
  done
  return 1
}

# find_class CLASS: first BDF with that PCI class code.
find_class() {
  for d in /sys/bus/pci/devices/*; do
    if [ "$(cat "$d/class")" = "$1" ]; then
      basename "$d"
      return 0
    fi
  done
  return 1
}

# bind_vfio BDF: moves the device to vfio-pci, whatever held it before.
bind_vfio() {
  d=/sys/bus/pci/devices/$1
  [ -d "$d" ] || setup_fail "no PCI device $1"
  echo vfio-pci >"$d/driver_override"
  [ -e "$d/driver" ] && echo "$1" >"$d/driver/unbind"
  echo "$1" >/sys/bus/pci/drivers_probe
  drv=$(basename "$(readlink "$d/driver")" 2>/dev/null)
  [ "$drv" = vfio-pci ] || setup_fail "$1 is bound to '$drv', not vfio-pci"
}

bind_devices() {
  EDU=$(find_pci 0x1234 0x11e8) || setup_fail "no edu device (1234:11e8)"
  IVSHMEM=$(find_pci 0x1af4 0x1110) || setup_fail "no ivshmem device (1af4:1110)"
  NVME=$(find_class 0x010802) || setup_fail "no NVMe controller (class 010802)"
  NONVIABLE=0000:00:1f.3
  for bdf in "$EDU" "$IVSHMEM" "$NVME" "$NONVIABLE"; do bind_vfio "$bdf"; done
  # VFIOD_VM_NUMA's second edu, behind node 1's expander bridge (a bus of its
  # own, so it sorts after every device of bus 0).
  EDU_NODE1=""
  for d in /sys/bus/pci/devices/*; do
    if [ "$(cat "$d/vendor")" = 0x1234 ] && [ "$(cat "$d/device")" = 0x11e8 ] &&
      [ "$(basename "$d")" != "$EDU" ]; then
      EDU_NODE1=$(basename "$d")
      bind_vfio "$EDU_NODE1"
      log "second edu $EDU_NODE1 on NUMA node $(cat "$d/numa_node")"
    fi
  done
  # The group of 00:1f.3 is non-viable only while another function of it
  # keeps a kernel driver: lpc_ich holds 00:1f.0.
  lpc=$(basename "$(readlink /sys/bus/pci/devices/0000:00:1f.0/driver)" 2>/dev/null)
  [ "$lpc" = lpc_ich ] || setup_fail "0000:00:1f.0 is bound to '$lpc', not lpc_ich"
}

# Gives the --as-user uid the device nodes a VFIO user needs.
grant_user() {
  [ -n "$AS_USER" ] || return 0
  chown "$AS_USER" /dev/vfio/[0-9]* || setup_fail "chown /dev/vfio groups"
  chmod 0666 /dev/vfio/vfio
}

run_command() {
  ulimit -l unlimited
  for t in 1 2; do stty -F "/dev/ttyS$t" raw -echo; done
  home=/root
  [ -n "$AS_USER" ] && home=/tmp
  set -- /usr/bin/env -i \
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    TERM=dumb LANG=C.UTF-8 HOME="$home" \
    VFIOD_IN_VM=1 VFIOD_EDU_BDF="$EDU" VFIOD_IVSHMEM_BDF="$IVSHMEM" \
    VFIOD_NVME_BDF="$NVME" VFIOD_NONVIABLE_BDF="$NONVIABLE" VFIOD_EDU_NODE1_BDF="$EDU_NODE1"
  if [ -n "$AS_USER" ]; then
    set -- "$@" /usr/bin/setpriv --reuid="$AS_USER" --regid="$AS_USER" --clear-groups
  fi
  log "devices bound, running the command${AS_USER:+ as uid $AS_USER}"
  # vm_run.sh boots again a guest that dies before this line, never after it.
  echo VFIOD_VM_COMMAND_STARTED
  chroot "$R" "$@" /bin/bash /run/vfiod-vm/cmd.sh \
    </dev/null >/dev/ttyS1 2>/dev/ttyS2
  status=$?
  log "command exited with $status"
}

mount_basics
log "kernel $(uname -r), loading modules"
load_modules
mount_shares
AS_USER=""
PROJECT_DIR=""
SYSTEMD=""
[ -r "$S/vm.conf" ] && . "$S/vm.conf"
if [ -n "$SYSTEMD" ]; then
  bind_devices
  . /lib/guest_systemd.sh
  boot_systemd
fi
prepare_chroot
bind_devices
grant_user
run_command
dmesg >"$S/dmesg.log" 2>/dev/null
echo "$status" >"$S/status.tmp" && mv "$S/status.tmp" "$S/status"
halt_guest
