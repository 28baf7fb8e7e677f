#!/usr/bin/env bash
# journald_host_test.sh VFIOD_BINARY PYTHON_CLIENT_DIR JOURNAL_CHECK
# vfiod's journal entries through the real systemd-journald on the host, with
# no systemd as PID 1: in a private mount namespace (tmpfs over /run/systemd,
# /run/log and /var/log/journal, so the host's journal is not touched) it
# starts systemd-journald on its own (it creates its sockets when none are
# passed), runs vfiod on the model kernel with stderr on a journal stream and
# JOURNAL_STREAM set as systemd sets it, drives it as uid 1000 with the Python
# client (connect, container.create, dma.alloc, dma.free, an alloc over the
# quota, a container of a device the policy refuses), and runs journal_check.sh
# on what journald stored. Needs root, unshare and systemd-journald: exits 77
# (skipped) without them.
set -euo pipefail

vfiod=$1
pyclient=$2
check=$3
journald=/lib/systemd/systemd-journald
edu=0000:00:03.0
ivshmem=0000:00:04.0

if [[ ${VFIOD_JOURNALD_NS:-} != 1 ]]; then
  if [[ $(id -u) -ne 0 ]] || ! command -v unshare >/dev/null || [[ ! -x $journald ]]; then
    echo "SKIP: needs root, unshare and $journald"
    exit 77
  fi
  VFIOD_JOURNALD_NS=1 exec unshare -m --propagation private "$0" "$@"
fi

work=$(mktemp -d)
chmod 755 "$work"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# --- a journald of our own ---------------------------------------------------
mkdir -p /run/systemd /run/log /var/log/journal
for d in /run/systemd /run/log /var/log/journal; do mount -t tmpfs tmpfs "$d"; done
mkdir -p /run/systemd/journal
SYSTEMD_LOG_LEVEL=warning "$journald" &
pids+=($!)
for _ in $(seq 100); do
  [[ -S /run/systemd/journal/socket && -S /run/systemd/journal/stdout ]] && break
  sleep 0.1
done
[[ -S /run/systemd/journal/stdout ]] || { echo "FAIL: journald did not start"; exit 1; }

# --- vfiod on the model kernel, stderr on a journal stream -------------------
sys=$work/sys
add_device() {  # add_device BDF VENDOR DEVICE GROUP
  local dir=$sys/bus/pci/devices/$1 g=$sys/kernel/iommu_groups/$4
  mkdir -p "$dir" "$g/devices" "$sys/bus/pci/drivers/vfio-pci"
  echo "$2" >"$dir/vendor"
  echo "$3" >"$dir/device"
  echo 0x00ff00 >"$dir/class"
  echo -1 >"$dir/numa_node"
  echo '(null)' >"$dir/driver_override"
  echo "0x00000000fea00000 0x00000000feafffff 0x0000000000040200" >"$dir/resource"
  ln -s "$dir" "$g/devices/$1"
  ln -s "$g" "$dir/iommu_group"
  ln -s "$sys/bus/pci/drivers/vfio-pci" "$dir/driver"
}
add_device $edu 0x1234 0x11e8 3
add_device $ivshmem 0x1af4 0x1110 4
cat >"$work/vfiod.json" <<JSON
{"socket": {"path": "$work/vfiod.sock", "group": null, "mode": "0666"},
 "kernel": "model", "sysfs_root": "$sys",
 "logging": {"level": "info", "target": "auto"},
 "policy": {"rules": [{"users": [1000], "devices": ["$edu"],
                       "quota": {"locked_bytes": "4M", "mappings": 2, "containers": 1}}]},
 "model": {"devices": [{"bdf": "$edu", "vendor": "1234", "device": "11e8", "group": 3, "bound": true},
                       {"bdf": "$ivshmem", "vendor": "1af4", "device": "1110", "group": 4, "bound": true}]}}
JSON
# systemd-cat puts stdout and stderr on a journal stream; JOURNAL_STREAM is
# what systemd would set for it: the stream's device and inode.
systemd-cat -t vfiod-stderr bash -c \
  'JOURNAL_STREAM=$(stat -L -c %d:%i /proc/self/fd/2) exec "$0" --config "$1"' \
  "$vfiod" "$work/vfiod.json" &
pids+=($!)
for _ in $(seq 300); do [[ -S $work/vfiod.sock ]] && break; sleep 0.1; done
[[ -S $work/vfiod.sock ]] || { echo "FAIL: vfiod did not start"; journalctl --no-pager; exit 1; }

# --- a client of uid 1000 ----------------------------------------------------
setpriv --reuid=1000 --regid=1000 --clear-groups env PYTHONPATH="$pyclient" \
  python3 - "$work/vfiod.sock" "$edu" "$ivshmem" <<'PY'
import sys
import vfiod

path, edu, ivshmem = sys.argv[1:4]
with vfiod.Client(path) as c:
    container = c.container_create([edu])["container"]
    with c.dma_alloc(container, 1 << 20, "4k") as buf:
        c.dma_free(buf.mapping)
    try:
        c.dma_alloc(container, 8 << 20, "4k")  # over the 4 MiB quota
        sys.exit("the alloc over the quota succeeded")
    except vfiod.QuotaExceededError:
        pass
    c.container_destroy(container)
    try:
        c.container_create([ivshmem])  # no rule allows it
        sys.exit("a container of a device the policy refuses was created")
    except vfiod.PermissionDeniedError as e:
        print("refused:", e)
print("client done")
PY

# --- what journald holds -----------------------------------------------------
sleep 0.5  # the last entries (the connection's close) in flight
"$check" 1000
policy=$(journalctl --no-pager -o export VFIOD_UID=1000 VFIOD_EVENT=policy_refused || true)
grep -qx "VFIOD_METHOD=container.create" <<<"$policy" &&
  grep -qx "VFIOD_BDF=$ivshmem" <<<"$policy" ||
  { echo "FAIL: no policy_refused entry naming $ivshmem:"; echo "$policy"; exit 1; }
echo "OK: the policy refusal names container.create and $ivshmem"
echo "--- journalctl VFIOD_UID=1000 -o verbose (the mapping) ---"
journalctl --no-pager -o verbose VFIOD_UID=1000 VFIOD_EVENT=mapping_created |
  grep -E '^ +(MESSAGE|MESSAGE_ID|PRIORITY|SYSLOG_IDENTIFIER|VFIOD_[A-Z]+|_TRANSPORT)='
