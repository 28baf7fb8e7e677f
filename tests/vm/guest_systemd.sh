# shellcheck shell=sh disable=SC3045  # busybox ash, sourced by guest_init.sh
# The systemd boot of the test guest (vm_run.sh --systemd; share/vm.conf
# SYSTEMD=1): after guest_init.sh has loaded the modules and bound the
# devices, Debian's own systemd (the host's binaries) becomes PID 1 on a
# writable copy of the host's /. Uses guest_init.sh's R, S, log, setup_fail
# and the BDF variables; never returns.
#
# The root: overlayfs, lower the host's / (read-only 9p at $R), upper and work
# on a tmpfs, so every write (an installed package, /etc/passwd, the journal)
# is the guest's and is gone at power-off. /dev, /proc and /sys move into it;
# /tmp and /run are fresh tmpfs mounts (systemd keeps an existing /run); the
# share is at /run/vfiod-vm as in the chroot boot.
#
# What the host's /etc would make systemd do that cannot work in the guest is
# masked in the overlay's /etc (see mask_units). The boot target is
# vfiod-vm.target: basic.target plus vfiod-vm-command.service, which prints
# VFIOD_VM_COMMAND_STARTED, runs share/cmd.sh as root with the command's
# environment (stdout on ttyS1, stderr on ttyS2), writes share/status and
# share/dmesg.log and powers the guest off at once (`systemctl --force
# --force poweroff`, reboot(2) without stopping units: the status is on the
# share already, and the tests need no orderly shutdown; the unit's
# SuccessAction= alone left the guest running until vm_run.sh's timeout).
# Not multi-user.target: nothing of
# the host's services (getty, databases, timers) belongs in the test.
N=/mnt/root

# Units masked in the overlay (symlinks to /dev/null), and why:
# - udev (daemon, its sockets, trigger, settle): nothing in the test needs
#   device units (no fstab, no getty), the /dev nodes come from devtmpfs, and
#   replaying every uevent costs seconds under TCG;
# - systemd-modules-load, modprobe@: the host's modules-load.d and the
#   modprobe@ units name modules of the host's kernel tree, which the guest
#   kernel does not have (init insmods its own);
# - systemd-timesyncd: no network in the guest;
# - timers.target: apt, man-db, e2scrub and the like would start at boot
#   (Persistent= timers catch up).
readonly kMaskedUnits="systemd-udevd.service systemd-udevd-control.socket
  systemd-udevd-kernel.socket systemd-udev-trigger.service
  systemd-udev-settle.service systemd-modules-load.service modprobe@.service
  systemd-timesyncd.service timers.target"

# The overlay and the API file systems systemd expects to find mounted.
build_root() {
  mkdir -p /mnt/rw "$N"
  # The host's / again, with the page and dentry caches on: systemd, its
  # generators and every systemctl load libsystemd-shared and read hundreds of
  # unit files, each read a 9p round trip without a cache (the tests change
  # nothing of the host's files while the guest runs).
  umount "$R" || setup_fail "umount the host's /"
  mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000,ro,cache=loose hostroot "$R" ||
    setup_fail "cannot mount the host's / over 9p (cache=loose)"
  mount -t tmpfs -o mode=0755 rw /mnt/rw || setup_fail "tmpfs for the overlay"
  mkdir -p /mnt/rw/upper /mnt/rw/work
  mount -t overlay -o "lowerdir=$R,upperdir=/mnt/rw/upper,workdir=/mnt/rw/work" overlay "$N" ||
    setup_fail "overlayfs over the host's / (overlay module missing? see vm_image.sh)"
  mount_scratch "$N" mode=0755,nosuid,nodev  # guest_init.sh
}

mask_units() {
  u=$N/etc/systemd/system
  mkdir -p "$u"
  for unit in $kMaskedUnits; do
    rm -f "$u/$unit"
    ln -s /dev/null "$u/$unit"
  done
  # No mounts or swap of the host's: an entry for a disk the guest lacks
  # would wait 90 s for its device.
  echo "# vfiod test guest: no file systems of the host's" >"$N/etc/fstab"
}

# The boot target and the unit that runs the command.
write_units() {
  u=$N/etc/systemd/system
  cat >"$u/vfiod-vm.target" <<'EOF'
[Unit]
Description=vfiod test guest: basic system, then the command of vm_run.sh
Requires=basic.target
Wants=vfiod-vm-command.service
After=basic.target
AllowIsolate=yes
EOF
  cat >"$u/vfiod-vm-command.service" <<'EOF'
[Unit]
Description=vfiod test guest: the command of vm_run.sh
After=basic.target

[Service]
Type=oneshot
ExecStart=/bin/sh /etc/vfiod-vm/run-command.sh
StandardInput=null
StandardOutput=journal+console
StandardError=journal+console
TimeoutStartSec=infinity
SuccessAction=poweroff-immediate
FailureAction=poweroff-immediate
EOF
  mkdir -p "$N/etc/vfiod-vm"
  cat >"$N/etc/vfiod-vm/run-command.sh" <<EOF
#!/bin/sh
# Written by the guest's init (guest_systemd.sh); run by vfiod-vm-command.service.
echo VFIOD_VM_COMMAND_STARTED >/dev/console
echo "vm-init: [\$(cut -d" " -f1 /proc/uptime)] systemd is up, running the command" >/dev/console
ulimit -l unlimited
/usr/bin/env -i \\
  PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \\
  TERM=dumb LANG=C.UTF-8 HOME=/root VFIOD_IN_VM=1 VFIOD_VM_SYSTEMD=1 \\
  VFIOD_EDU_BDF=$EDU VFIOD_IVSHMEM_BDF=$IVSHMEM VFIOD_NVME_BDF=$NVME \\
  VFIOD_NONVIABLE_BDF=$NONVIABLE VFIOD_EDU_NODE1_BDF=$EDU_NODE1 \\
  /bin/bash /run/vfiod-vm/cmd.sh </dev/null >/dev/ttyS1 2>/dev/ttyS2
status=\$?
echo "vm-init: [\$(cut -d" " -f1 /proc/uptime)] command exited with \$status" >/dev/console
dmesg >/run/vfiod-vm/dmesg.log 2>/dev/null
echo "\$status" >/run/vfiod-vm/status.tmp && mv /run/vfiod-vm/status.tmp /run/vfiod-vm/status
sync
# reboot(2) from here: the unit's SuccessAction= did not end the guest.
systemctl --force --force poweroff
EOF
}

# Hands PID 1 to systemd on the overlay.
boot_systemd() {
  [ -x "$R/lib/systemd/systemd" ] || setup_fail "the host has no /lib/systemd/systemd"
  build_root
  mask_units
  write_units
  for t in 1 2; do stty -F "/dev/ttyS$t" raw -echo; done
  log "devices bound, starting systemd as PID 1"
  for fs in dev sys proc; do
    mount --move "/$fs" "$N/$fs" || setup_fail "move /$fs into the new root"
  done
  exec switch_root "$N" /lib/systemd/systemd --unit=vfiod-vm.target
}
