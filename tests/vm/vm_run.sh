#!/usr/bin/env bash
# vm_run.sh [--timeout SECONDS] [--as-user UID | --systemd] [--log FILE]
#           [--env NAME=VALUE]... -- COMMAND [ARGS...]
#
# Boots the vfiod test guest under QEMU (TCG; q35 + intel-iommu, edu,
# ivshmem-plain 64 MiB, NVMe; Debian's 6.1 kernel, or with VFIOD_VM_KERNEL=newest
# the newest kernel of trixie-backports), binds the test devices to vfio-pci and
# runs COMMAND in a chroot of the host's own / (read-only 9p) as root or as UID.
# COMMAND's stdout and stderr are streamed to ours; its exit status is ours. A
# guest that dies before COMMAND starts (an early panic, "timer doesn't work",
# a boot that hangs) is booted again, at most twice; once COMMAND has started
# nothing is retried. --systemd boots the host's systemd as PID 1 on a
# writable overlay of the host's / and runs COMMAND as root from a unit
# (guest_systemd.sh). See README.md beside this file.
#
# Exit status: COMMAND's; 77 the VM cannot be had here (QEMU, busybox-static
# or the kernel package missing); 124 the guest hung past the timeout;
# 125 the guest broke before COMMAND could finish (log printed and kept);
# 127 COMMAND does not exist (checked on the host, before booting); 2 usage
# (also a VFIOD_VM_KERNEL other than lts or newest).
set -uo pipefail

readonly kSkip=77 kTimedOut=124 kBroken=125
# guest_init.sh prints this on the console right before it runs COMMAND.
readonly kStartedMarker=VFIOD_VM_COMMAND_STARTED
# Console lines that say the guest kernel died.
readonly kKernelDied="Kernel panic|timer doesn.t work|Oops|BUG: |general protection fault"
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
readonly here

usage() {
  sed -n '2,3s/^# //p' "${BASH_SOURCE[0]}" >&2
  exit 2
}
skip() { echo "vm_run: SKIP: $*" >&2; exit "$kSkip"; }

timeout_s=240
as_user=""
systemd=""
log=""
envs=()
while [[ $# -gt 0 ]]; do
  case $1 in
    --timeout) timeout_s=${2:?}; shift 2 ;;
    --as-user) as_user=${2:?}; shift 2 ;;
    --systemd) systemd=1; shift ;;
    --log) log=${2:?}; shift 2 ;;
    --env) envs+=("${2:?}"); shift 2 ;;
    --) shift; break ;;
    *) usage ;;
  esac
done
[[ $# -gt 0 ]] || usage
[[ $timeout_s =~ ^[0-9]+$ ]] || { echo "vm_run: bad --timeout '$timeout_s'" >&2; exit 2; }
[[ -z $as_user || $as_user =~ ^[0-9]+$ ]] || { echo "vm_run: --as-user takes a numeric uid" >&2; exit 2; }
# Under systemd the command runs as root and makes its users itself.
[[ -z $as_user || -z $systemd ]] || { echo "vm_run: --as-user and --systemd exclude each other" >&2; exit 2; }
flavour=${VFIOD_VM_KERNEL:-lts}
[[ $flavour == lts || $flavour == newest ]] ||
  { echo "vm_run: VFIOD_VM_KERNEL must be lts or newest, not '$flavour'" >&2; exit 2; }
retries=${VFIOD_VM_BOOT_RETRIES:-2}
boot_timeout=${VFIOD_VM_BOOT_TIMEOUT:-120}
fail_boots=${VFIOD_VM_FAIL_BOOTS:-0}
for n in "$retries" "$boot_timeout" "$fail_boots"; do
  [[ $n =~ ^[0-9]+$ ]] || { echo "vm_run: VFIOD_VM_BOOT_RETRIES, VFIOD_VM_BOOT_TIMEOUT and VFIOD_VM_FAIL_BOOTS take numbers" >&2; exit 2; }
done
# GTEST_* from the caller reach the command, so GTEST_FILTER works by hand.
while IFS= read -r v; do envs+=("$v"); done < <(env | grep '^GTEST_[A-Z_]*=' || true)

# The cache: VFIOD_VM_CACHE, else vm-cache in the build tree holding COMMAND,
# else the user's cache folder.
default_cache() {
  local d
  d=$(dirname "$(readlink -f "$(command -v "$1" || echo "$1")")")
  while [[ $d != / ]]; do
    [[ -e $d/CMakeCache.txt ]] && { echo "$d/vm-cache"; return; }
    d=$(dirname "$d")
  done
  echo "${XDG_CACHE_HOME:-$HOME/.cache}/vfiod-vm"
}

# The guest sees the host's /, so a command missing here is missing there:
# say so now rather than after a boot (an unbuilt target, a typo).
if ! command -v "$1" >/dev/null; then
  echo "vm_run: COMMAND not found: $1" >&2
  exit 127
fi

qemu=${VFIOD_VM_QEMU:-qemu-system-x86_64}
command -v "$qemu" >/dev/null || skip "no $qemu (install qemu-system-x86)"
cache=${VFIOD_VM_CACHE:-$(default_cache "$1")}
images=$(VFIOD_VM_KERNEL=$flavour "$here/vm_image.sh" "$cache")
rc=$?
[[ $rc -eq 0 ]] || { [[ $rc -eq $kSkip ]] && exit "$kSkip"; echo "vm_run: image preparation failed ($rc)" >&2; exit "$kBroken"; }
kernel=$(sed -n 1p <<<"$images")
initrd=$(sed -n 2p <<<"$images")
release=$(sed -n 3p <<<"$images")
echo "vm_run: kernel $release ($flavour)" >&2

run=$(mktemp -d "${TMPDIR:-/tmp}/vfiod-vm.XXXXXX") || exit "$kBroken"
share=$run/share
mkdir "$share"
log=${log:-$run/console.log}
: >"$log" || exit "$kBroken"
# The project tree (this script's ../..) is shared on its own when it lives
# where the guest mounts its own tmpfs (a clone under /tmp, as CI may make).
project=$(cd "$here/../.." && pwd -P)
case $project in
  /tmp/* | /run/*) ;;
  *) project="" ;;
esac
target=$(readlink -f "$(command -v "$1" || echo "$1")")
case $target in
  "$project"/*) ;;
  /tmp/* | /run/* | /dev/* | /proc/* | /sys/*)
    echo "vm_run: warning: $1 is hidden in the guest (/tmp, /run, /dev are the guest's own)" >&2 ;;
esac

printf 'AS_USER=%s\nPROJECT_DIR=%q\nSYSTEMD=%s\n' "$as_user" "$project" "$systemd" >"$share/vm.conf"
{
  echo "# written by vm_run.sh, run by the guest's init in the chroot"
  for v in "${envs[@]}"; do printf 'export %q\n' "$v"; done
  printf 'cd %q 2>/dev/null || cd /\n' "$PWD"
  printf 'exec'; printf ' %q' "$@"; echo
} >"$share/cmd.sh"

# QEMU option values double their commas.
qesc() { echo "${1//,/,,}"; }
# no_timer_check: 6.1's IO-APIC timer check is timing-based and panics
# ("timer doesn't work") whenever TCG is slow, as on a loaded host.
append="console=ttyS0 quiet panic=-1 intel_iommu=on no_timer_check"
# VFIOD_VM_HUGEPAGES_1G: 1 GiB pages reserved at boot (they cannot be relied
# on at run time); the benchmark's map table needs 2 (raw buffer and memfd).
append+=" hugepagesz=1G hugepages=${VFIOD_VM_HUGEPAGES_1G:-1} hugepagesz=2M hugepages=64"
# shellcheck disable=SC2054  # commas separate QEMU sub-options
qemu_args=(
  -nodefaults -no-user-config -display none -no-reboot
  -accel tcg,thread=multi -M q35,kernel-irqchip=split -cpu max
  -m "${VFIOD_VM_MEM:-4G}" -smp "${VFIOD_VM_SMP:-2}"
  -device intel-iommu,intremap=on,caching-mode=on
  -device edu
  -object memory-backend-ram,id=hostmem,size="${VFIOD_VM_IVSHMEM_SIZE:-64M}" -device ivshmem-plain,memdev=hostmem
  -drive file="$(qesc "$run/nvme.img")",if=none,id=nvm,format=raw -device nvme,serial=vfiod-vm,drive=nvm
  -virtfs local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap
  -virtfs local,path="$(qesc "$share")",mount_tag=share,security_model=none
  -chardev file,id=con,path="$(qesc "$log")" -serial chardev:con
  -chardev file,id=out,path="$(qesc "$run/stdout")",append=on -serial chardev:out
  -chardev file,id=err,path="$(qesc "$run/stderr")",append=on -serial chardev:err
  -kernel "$kernel" -initrd "$initrd"
)
# VFIOD_VM_NUMA=1: two NUMA nodes (one vCPU and half the memory each) and a
# second edu behind a PCIe expander bridge of node 1, so the guest's sysfs
# gives that device numa_node 1 (guest_init.sh exports it as
# VFIOD_EDU_NODE1_BDF). Off by default: every other test sees one node.
if [[ ${VFIOD_VM_NUMA:-0} == 1 ]]; then
  mem=${VFIOD_VM_MEM:-4G}
  [[ $mem =~ ^([0-9]+)G$ && $(( ${BASH_REMATCH[1]} % 2 )) -eq 0 ]] ||
    { echo "vm_run: VFIOD_VM_NUMA needs VFIOD_VM_MEM in even GiB, not '$mem'" >&2; exit 2; }
  half=$(( ${BASH_REMATCH[1]} / 2 ))G
  # shellcheck disable=SC2054
  qemu_args+=(
    -object memory-backend-ram,id=node0mem,size="$half" -numa node,nodeid=0,cpus=0,memdev=node0mem
    -object memory-backend-ram,id=node1mem,size="$half" -numa node,nodeid=1,cpus=1,memdev=node1mem
    -device pxb-pcie,id=pxb1,bus_nr=128,numa_node=1,bus=pcie.0
    -device pcie-root-port,id=pxb1rp,bus=pxb1,chassis=41,slot=0
    -device edu,bus=pxb1rp
  )
fi
if [[ -n $project ]]; then
  qemu_args+=(-virtfs "local,path=$(qesc "$project"),mount_tag=project,security_model=none,readonly=on,multidevs=remap")
fi

# boot SECONDS: one boot of the guest, killed after SECONDS. Sets qrc (QEMU's
# exit status under timeout), started (1 once the console showed
# kStartedMarker) and boot_hung (1 when no marker came within boot_timeout).
# VFIOD_VM_FAIL_BOOTS=N (a test hook) boots the first N times with an init
# that does not exist, so the kernel panics before COMMAND starts.
qpid=""
trap '[[ -n $qpid ]] && kill -TERM $qpid 2>/dev/null' INT TERM HUP
boot() {
  local t0=$SECONDS extra="" tails
  [[ $attempt -le $fail_boots ]] && extra=" rdinit=/vfiod-vm-no-init"
  rm -f "$share/status" "$share/setup_error" "$share/dmesg.log"
  { : >"$log" && : >"$run/stdout" && : >"$run/stderr"; } || exit "$kBroken"
  { rm -f "$run/nvme.img" && truncate -s 16M "$run/nvme.img"; } || exit "$kBroken"
  chmod -R a+rX "$run"
  started=0
  boot_hung=0
  timeout -k 10 "$1" "$qemu" "${qemu_args[@]}" -append "$append$extra" \
    </dev/null >"$run/qemu.log" 2>&1 &
  qpid=$!
  tail -s 0.2 -n +1 -f --pid=$qpid "$run/stdout" &
  tails=($!)
  tail -s 0.2 -n +1 -f --pid=$qpid "$run/stderr" >&2 &
  tails+=($!)
  if [[ -n ${VFIOD_VM_VERBOSE:-} ]]; then
    tail -s 0.2 -n +1 -f --pid=$qpid "$log" >&2 &
    tails+=($!)
  fi
  # Until COMMAND starts, watch the console for the marker and the boot time.
  while kill -0 "$qpid" 2>/dev/null; do
    if grep -qaF "$kStartedMarker" "$log"; then
      started=1
      break
    fi
    if ((SECONDS - t0 >= boot_timeout)); then
      boot_hung=1
      kill -TERM "$qpid" 2>/dev/null
      break
    fi
    sleep 0.5
  done
  wait "$qpid"
  qrc=$?
  qpid=""
  wait "${tails[@]}"
  if [[ $started -eq 0 ]] && grep -qaF "$kStartedMarker" "$log"; then
    started=1
    boot_hung=0
  fi
}

# broken REASON EXIT: explains a guest that did not deliver a status.
broken() {
  {
    echo "vm_run: FAIL: $1"
    echo "vm_run: guest console log: $log (run folder kept: $run)"
    echo "---- last lines of the guest console ----"
    tail -n 30 "$log"
    if [[ -s $run/qemu.log ]]; then
      echo "---- qemu ----"
      tail -n 10 "$run/qemu.log"
    fi
  } >&2
  exit "$2"
}

# why_died: one line saying how a guest that never started COMMAND ended.
why_died() {
  local line
  line=$(grep -aE -m1 "$kKernelDied" "$log" | tr -d '\r')
  if [[ $boot_hung -eq 1 ]]; then
    echo "no command start within ${boot_timeout}s"
  elif [[ -n $line ]]; then
    echo "${line:0:160}"
  elif [[ -s $share/setup_error ]]; then
    echo "setup failed: $(<"$share/setup_error")"
  else
    echo "QEMU exited $qrc"
  fi
}

# retryable: the guest died before COMMAND started. A setup failure the guest
# reported itself (a missing device) is deterministic unless the kernel died.
retryable() {
  [[ $started -eq 0 && ! -s $share/status ]] || return 1
  [[ ! -s $share/setup_error ]] || grep -qaE "$kKernelDied" "$log"
}

deadline=$((SECONDS + timeout_s))
attempt=1
while :; do
  boot $((deadline - SECONDS))
  retryable || break
  # Another boot only with time left for it.
  if [[ $attempt -gt $retries || $((deadline - SECONDS)) -lt 30 ]]; then
    echo "vm_run: guest died before the command started ($(why_died)); giving up after $attempt boot(s)" >&2
    break
  fi
  cp "$log" "$run/console-boot$attempt.log"
  echo "vm_run: guest died before the command started ($(why_died)); console kept: $run/console-boot$attempt.log; booting again ($((attempt + 1)) of $((retries + 1)))" >&2
  attempt=$((attempt + 1))
done

if [[ -s $share/status ]]; then
  status=$(<"$share/status")
  if [[ $status -eq 0 || $status -eq $kSkip ]] && [[ -z ${VFIOD_VM_KEEP:-} ]]; then
    rm -rf "$run"
  else
    echo "vm_run: command exited $status; guest console log: $log, dmesg: $run/share/dmesg.log" >&2
  fi
  exit "$status"
fi
[[ $boot_hung -eq 1 ]] && broken "the guest did not start the command within ${boot_timeout}s ($attempt boot(s))" "$kBroken"
[[ $qrc -eq 124 || $qrc -eq 137 ]] && broken "guest hung past the ${timeout_s}s timeout and was killed" "$kTimedOut"
[[ -s $share/setup_error ]] && broken "guest setup failed: $(<"$share/setup_error")" "$kBroken"
[[ $started -eq 1 ]] &&
  broken "guest stopped after the command started, without reporting a status (QEMU exit $qrc; not retried)" "$kBroken"
broken "guest stopped before the command started (QEMU exit $qrc; $attempt boot(s))" "$kBroken"
