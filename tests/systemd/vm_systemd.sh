#!/usr/bin/env bash
# shellcheck disable=SC2016  # the checks are eval'd strings, single-quoted on purpose
# vm_systemd.sh BUILD_DIR: vfiod under the real systemd, inside the test guest
# booted with `vm_run.sh --systemd` (Debian's systemd as PID 1 on a writable
# overlay of the host's /; tests/vm/guest_systemd.sh). Runs as root.
#
# vfiod is installed from the Debian packages made from BUILD_DIR (dpkg -i;
# the postinst makes the users and enables the socket), and a member of
# vfio-users (uid 1500, made here) drives it. Every
# check prints one PASS or FAIL line; the script exits 1 if any failed.
#   - socket activation: the service starts with the first connection of a
#     member; a user outside vfio-users cannot connect and starts nothing;
#   - the hardened unit (user vfiod, CAP_IPC_LOCK + CAP_DAC_OVERRIDE only)
#     opens VFIO groups and the edu example does real DMA for the member
#     (2 MiB hugetlb memory, the bytes checked by the example);
#   - hugetlb 2 MiB and THP allocations whose contiguity report names its
#     folio source (backing, smaps) although PFNs are hidden;
#   - device.unbind/device.bind of the ivshmem function through sysfs
#     under ProtectSystem=strict + ProtectKernelTunables, checked in sysfs;
#   - SIGKILL: Restart=on-failure starts a new vfiod that took over the
#     member's named container from the fd store;
#   - a package upgrade (dpkg -i again) restarts vfiod, and the member's
#     named container and mapping survive it at the same IOVA;
#   - `vfioctl daemon restart` (vfiod's documented equivalent of a reload:
#     exit 75, RestartForceExitStatus) while an edu client keeps DMAing
#     through a mapping it got before: DMA goes on while vfiod is down, and
#     the new vfiod gives the mapping back at the same IOVA;
#   - metrics: with the packaged example drop-in and metrics.textfile set,
#     vfiod writes node_exporter's textfile; `vfioctl stats --prometheus`;
#   - the watchdog: with WatchdogSec=5s (a test drop-in), a stopped vfiod
#     (SIGSTOP) is killed by systemd and restarted;
#   - `systemd-analyze security vfiod.service` at or under 2.0;
#   - the structured journal fields (journal_check.sh): connection,
#     container create, map, free and a quota refusal of the member, found
#     with `journalctl VFIOD_UID=1500`.
set -uo pipefail

[[ $# -eq 1 && -d $1 ]] || { echo "usage: vm_systemd.sh BUILD_DIR" >&2; exit 2; }
build=$(cd "$1" && pwd)
readonly build
readonly kMember=1500 kMaxExposure=2.0
edu=${VFIOD_EDU_BDF:?not in the test VM}
ivshmem=${VFIOD_IVSHMEM_BDF:?not in the test VM}
fails=0

pass() { echo "PASS: $*"; }
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
# check WHAT CMD...: PASS or FAIL by CMD's status.
check() {
  local what=$1
  shift
  if "$@"; then pass "$what"; else fail "$what"; fi
}
# wait_for SECONDS CMD...: polls CMD until it succeeds; 1 when time ran out.
wait_for() {
  local end=$((SECONDS + $1))
  shift
  until "$@"; do
    ((SECONDS < end)) || return 1
    sleep 0.5
  done
}
step() { echo "== $* ($(cut -d' ' -f1 /proc/uptime) s)"; }
as_member() { setpriv --reuid=$kMember --regid=$kMember --init-groups "$@"; }
as_nobody() { setpriv --reuid=65534 --regid=65534 --clear-groups "$@"; }
main_pid() { systemctl show -P MainPID vfiod.service; }
restarts() { systemctl show -P NRestarts vfiod.service; }
active() { [[ $(systemctl is-active vfiod.service) == active ]]; }
# new_vfiod OLD_PID: vfiod is active again under another main PID.
new_vfiod() { active && [[ $(main_pid) != 0 && $(main_pid) != "$1" ]]; }
die() { echo "FAIL: $*"; exit 1; }

[[ $(cat /proc/1/comm) == systemd ]] || die "PID 1 is not systemd (run with vm_run.sh --systemd)"

step "install the packages"
# The .debs scripts/package.sh made from this build tree on the host (the
# package_deb test, a fixture of this one). Their postinst creates the users
# (systemd-sysusers) and enables and starts vfiod.socket, as Debian's do.
debs=$build/tests/packaging/package_deb/out
# The overlay is a copy of the build host's /, which may be a container
# image: its policy-rc.d forbids starting services (Docker's, exit 101), and
# no real Debian machine has one. And man-db's trigger would rebuild its
# index over 9p under TCG for minutes: a cache nobody here reads.
rm -f /usr/sbin/policy-rc.d /var/lib/man-db/auto-update
dpkg -i "$debs"/vfiod_*.deb "$debs"/python3-vfiod_*.deb >/tmp/install.log 2>&1 ||
  { cat /tmp/install.log; die "dpkg -i"; }
check "the postinst made the user vfiod and the group vfio-users" \
  eval 'getent passwd vfiod >/dev/null && getent group vfio-users >/dev/null'
check "the postinst enabled vfiod.socket" \
  eval '[[ $(systemctl is-enabled vfiod.socket) == enabled ]]'
check "the python client is installed where python3 finds it" \
  python3 -c 'import vfiod'
useradd -M -N -u $kMember -G vfio-users -s /bin/sh vmtester || die "useradd vmtester"

step "socket activation"
check "vfiod.socket is active, vfiod.service is not" \
  eval '[[ $(systemctl is-active vfiod.socket) == active ]] && ! active'
check "the socket is root:vfio-users 0660" \
  eval '[[ $(stat -c "%U:%G %a" /run/vfiod/vfiod.sock) == "root:vfio-users 660" ]]'
check "a user outside vfio-users cannot connect" eval '! as_nobody vfioctl ping >/dev/null 2>&1'
check "... and starts nothing" eval '! active'
check "a member of vfio-users connects" as_member vfioctl ping
check "... and the connection started vfiod.service" active
check "the socket is still root:vfio-users 0660 with vfiod running" \
  eval '[[ $(stat -c "%U:%G %a" /run/vfiod/vfiod.sock) == "root:vfio-users 660" ]]'
pid=$(main_pid)
check "vfiod runs as user vfiod" eval '[[ $(ps -o user= -p "$pid") == vfiod ]]'
# CAP_DAC_OVERRIDE (bit 1) and CAP_IPC_LOCK (bit 14), nothing else.
check "its effective capabilities are DAC_OVERRIDE and IPC_LOCK only" \
  eval '[[ $(awk "/^CapEff:/ {print \$2}" /proc/$pid/status) == 0000000000004002 ]]'

step "systemd-analyze security"
exposure=$(systemd-analyze security vfiod.service 2>/dev/null |
  sed -n 's/.*Overall exposure level for vfiod.service: \([0-9.]*\).*/\1/p')
echo "exposure: ${exposure:-none}"
check "exposure ${exposure:-?} <= $kMaxExposure" \
  awk -v e="${exposure:-99}" -v m=$kMaxExposure 'BEGIN { exit !(e <= m) }'

step "edu DMA for the member through the hardened unit"
as_member "$build/client/examples/edu_dma" --bdf "$edu" >/tmp/edu.out 2>&1
rc=$?
check "edu_dma (2 MiB hugetlb, MSI) exits 0 with every byte back" \
  eval '[[ $rc -eq 0 ]] && grep -q "all 2048 bytes match" /tmp/edu.out'
[[ $rc -eq 0 ]] || cat /tmp/edu.out

step "hugetlb and THP memory, contiguity without PFNs"
as_member vfioctl container create "$edu" --name keep >/dev/null || fail "container create"
as_member vfioctl dma alloc keep 4M --backing hugetlb-2m --name huge >/dev/null ||
  fail "dma alloc hugetlb-2m"
as_member vfioctl dma alloc keep 4M --backing thp --require-thp --name thp >/dev/null ||
  fail "dma alloc thp"
huge=$(as_member vfioctl --json dma info huge)
thp=$(as_member vfioctl --json dma info thp)
echo "hugetlb: $(jq -c .contiguity <<<"$huge")"
echo "thp: $(jq -c .contiguity <<<"$thp")"
check "hugetlb 4M: two 2M folios, from the backing" \
  eval '[[ $(jq -r "[.contiguity.folio_source, .contiguity.folios[\"2M\"]] | join(\" \")" <<<"$huge") == "backing 2" ]]'
check "thp 4M: 2M folios seen in smaps" \
  eval '[[ $(jq -r .contiguity.folio_source <<<"$thp") == smaps && $(jq -r ".contiguity.folios[\"2M\"]" <<<"$thp") -ge 1 ]]'

step "structured journal fields"
# The member's quota (config/vfiod.json: 1G locked) refuses 2G; freeing thp
# gives the map a free. journal_check.sh then finds each event by
# `journalctl VFIOD_UID=$kMember MESSAGE_ID=...`, sent natively.
check "2G beyond the member's 1G quota is refused" \
  eval '! as_member vfioctl dma alloc keep 2G --backing 4k >/dev/null 2>&1'
as_member vfioctl dma free thp >/dev/null || fail "dma free thp"
check "journal_check.sh: each event once, native, with its fields" \
  "$(dirname "$0")/journal_check.sh" "$kMember" --boot

step "device.unbind / device.bind through sysfs under ProtectSystem=strict"
driver() { basename "$(readlink "/sys/bus/pci/devices/$ivshmem/driver" 2>/dev/null)" 2>/dev/null; }
check "the member may not bind (policy may_bind false)" \
  eval '! as_member vfioctl device bind "$ivshmem" >/dev/null 2>&1'
vfioctl device unbind "$ivshmem" || true
check "device.unbind left $ivshmem without a driver (sysfs)" eval '[[ -z $(driver) ]]'
vfioctl device bind "$ivshmem" || true
check "device.bind gave $ivshmem to vfio-pci (sysfs)" eval '[[ $(driver) == vfio-pci ]]'

step "SIGKILL: Restart=on-failure"
pid=$(main_pid)
n=$(restarts)
kill -KILL "$pid"
check "a new vfiod runs after SIGKILL of $pid" wait_for 60 new_vfiod "$pid"
check "NRestarts went up (was $n)" eval '[[ $(restarts) -gt $n ]]'
check "the member connects to it" as_member vfioctl ping
check "it took over the named container from the fd store" \
  eval 'as_member vfioctl --json container list | jq -e "any(.[]; .name == \"keep\")" >/dev/null'
# What the taken-over objects keep in the store is charged to its budget
# (limits.max_stored_fds: 65000 below the unit's FileDescriptorStoreMax=65536).
check "the fd store budget charges what was taken over (status)" \
  eval 'vfioctl --json status | jq -e ".restart.stored_fds_charged > 0 and .restart.max_stored_fds == 65000" >/dev/null'
# ... to the member who owns them (its status shows its own charge and its
# share, limits.max_stored_fds_per_user).
check "the member's share is charged what was taken over of its objects" \
  eval 'as_member vfioctl --json status | jq -e ".restart.stored_fds_charged > 0 and .restart.max_stored_fds_per_user == 4096" >/dev/null'

step "a package upgrade restarts vfiod, which keeps the member's memory"
# dpkg -i of the installed version runs the upgrade path of the maintainer
# scripts (prerm upgrade, postinst configure OLD-VERSION): postinst restarts
# the running vfiod.service into the package's binary (`systemctl restart`:
# SIGTERM, a graceful hand-over), and the fd store, kept while the restart
# job runs, gives the new vfiod the named container and its mapping.
before=$(as_member vfioctl --json dma info huge | jq -c '{iova, size}')
pid=$(main_pid)
dpkg -i "$debs"/vfiod_*.deb >/tmp/upgrade.log 2>&1 || { cat /tmp/upgrade.log; fail "dpkg -i (upgrade)"; }
check "the upgrade restarted vfiod ($pid before)" wait_for 60 new_vfiod "$pid"
after=$(as_member vfioctl --json dma info huge 2>&1 | jq -c '{iova, size}' 2>&1)
echo "mapping huge before: $before, after: $after"
check "the named container's mapping survived at the same IOVA" \
  eval '[[ -n $before && $after == "$before" ]]'
# The named container holds edu's group; the next client makes its own.
as_member vfioctl container destroy keep >/dev/null || fail "container destroy keep"

step "vfioctl daemon restart (the documented reload) under a DMAing client"
as_member "$build/client/examples/edu_dma" --bdf "$edu" --size 64K --backing 4k \
  --across-restart >/tmp/across.out 2>&1 &
client=$!
check "the client has its mapping and waits" \
  wait_for 60 grep -q "waiting for vfiod to restart" /tmp/across.out
pid=$(main_pid)
n=$(restarts)
vfioctl daemon restart || fail "vfioctl daemon restart"
check "a new vfiod runs after the hand-over (exit 75)" wait_for 60 new_vfiod "$pid"
check "NRestarts went up (was $n)" eval '[[ $(restarts) -gt $n ]]'
wait "$client"
rc=$?
check "edu DMA went on through the restart, the mapping at the same IOVA" \
  eval '[[ $rc -eq 0 ]] && grep -q "DMA went on through the restart" /tmp/across.out'
resumed=$(sed -n 's/.*session resumed after a restart of vfiod: //p' /tmp/across.out)
echo "session.resume: ${resumed:-nothing}"
check "the client's session came back with its container and mapping" \
  eval 'jq -e ".containers == 1 and .mappings == 1" <<<"$resumed" >/dev/null'
[[ $rc -eq 0 ]] || cat /tmp/across.out

step "metrics: the Prometheus textfile under the packaged drop-in, and vfioctl stats"
# As systemd/README.md tells an admin: the example drop-in from the package,
# metrics.textfile in the config, a restart. (The watchdog drop-in of the
# next step goes in with it: one restart for both.)
textfile=/var/lib/prometheus/node-exporter/vfiod.prom
mkdir -p /etc/systemd/system/vfiod.service.d "$(dirname "$textfile")"
cp /usr/share/doc/vfiod/examples/metrics-textfile.conf /etc/systemd/system/vfiod.service.d/
jq --arg f "$textfile" '.metrics.textfile = $f' /etc/vfiod/vfiod.json >/tmp/vfiod.json &&
  cat /tmp/vfiod.json >/etc/vfiod/vfiod.json
cat >/etc/systemd/system/vfiod.service.d/watchdog-test.conf <<'EOF'
[Service]
WatchdogSec=5s
EOF
systemctl daemon-reload
systemctl restart vfiod.service || fail "systemctl restart vfiod"
pid=$(main_pid)
check "vfiod writes $textfile under ProtectSystem=strict" \
  wait_for 30 grep -q '^vfiod_uptime_seconds ' "$textfile"
check "... mode 0644, with the daemon's figures" \
  eval '[[ $(stat -c %a "$textfile") == 644 ]] && grep -q "^vfiod_info{" "$textfile" &&
        grep -q "^vfiod_max_locked_bytes " "$textfile"'
check "the member reads its own figures with vfioctl stats --prometheus" \
  eval 'as_member vfioctl ping >/dev/null &&
        as_member vfioctl stats --prometheus | grep -q "^vfiod_requests_total{method=\"ping\"} [1-9]"'

step "the watchdog restarts a hung vfiod"
kill -STOP "$pid"
check "a new vfiod runs after $pid stopped answering the watchdog" wait_for 90 new_vfiod "$pid"
# (NRestarts is no witness here: the manual restart above flushes it at some
# later start.)
check "the journal says why" \
  eval 'journalctl -b -u vfiod.service | grep -q "vfiod.service: Failed with result .watchdog."'
check "the member connects to the new vfiod" as_member vfioctl ping

if ((fails > 0)); then
  echo "---- vfiod's journal ----"
  journalctl -b -u vfiod.service -u vfiod.socket --no-pager | tail -n 60
  echo "vm_systemd: $fails check(s) failed"
  exit 1
fi
echo "vm_systemd: all checks passed"
