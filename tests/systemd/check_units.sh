#!/usr/bin/env bash
# Offline checks of vfiod's systemd units (no systemd as PID 1 needed):
#   check_units.sh verify   UNIT_DIR EXEC_PATH   systemd-analyze verify, silent and rc 0
#   check_units.sh security UNIT_DIR THRESHOLD   exposure score <= THRESHOLD (e.g. 1.1)
#   check_units.sh sysusers UNIT_DIR             systemd-sysusers --dry-run accepts the file
# `verify` fails when ExecStart's binary does not exist, so the unit is checked
# as a copy whose ExecStart runs EXEC_PATH instead of /usr/sbin/vfiod.
set -euo pipefail

mode=$1
unit_dir=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

prepare_units() {  # copies the units, with ExecStart pointing at $1
  local exec_path=$1
  [[ -x $exec_path ]] || { echo "FAIL: $exec_path is not executable"; exit 1; }
  grep -q '^ExecStart=/usr/sbin/vfiod ' "$unit_dir/vfiod.service" ||
    { echo "FAIL: vfiod.service does not start /usr/sbin/vfiod"; exit 1; }
  sed "s#^ExecStart=/usr/sbin/vfiod #ExecStart=$exec_path #" \
    "$unit_dir/vfiod.service" >"$work/vfiod.service"
  cp "$unit_dir/vfiod.socket" "$work/vfiod.socket"
  echo "checking a copy of vfiod.service whose ExecStart runs $exec_path"
}

case $mode in
  verify)
    prepare_units "$3"
    # verify returns 0 even for settings it ignores as unparsable: any output fails.
    out=$(cd "$work" && systemd-analyze verify ./vfiod.service ./vfiod.socket 2>&1) && rc=0 || rc=$?
    if [[ $rc -ne 0 || -n $out ]]; then
      echo "FAIL: systemd-analyze verify (rc $rc):"
      echo "$out"
      exit 1
    fi
    echo "OK: systemd-analyze verify reports nothing"
    # The optional drop-ins (*.conf beside the units) must verify as well:
    # each is checked appended to the unit, as systemd would merge it.
    for dropin in "$unit_dir"/*.conf; do
      [[ -e $dropin ]] || continue
      cp "$work/vfiod.service" "$work/plain.service"
      cat "$dropin" >>"$work/vfiod.service"
      out=$(cd "$work" && systemd-analyze verify ./vfiod.service ./vfiod.socket 2>&1) && rc=0 || rc=$?
      mv "$work/plain.service" "$work/vfiod.service"
      if [[ $rc -ne 0 || -n $out ]]; then
        echo "FAIL: systemd-analyze verify with drop-in $(basename "$dropin") (rc $rc):"
        echo "$out"
        exit 1
      fi
      echo "OK: systemd-analyze verify reports nothing with drop-in $(basename "$dropin")"
    done
    ;;
  security)
    threshold=$3
    prepare_units /bin/true  # the score does not depend on the binary
    out=$(cd "$work" && systemd-analyze security --offline=yes ./vfiod.service 2>&1)
    echo "$out" | grep -E '✗|Overall' || true
    score=$(echo "$out" | sed -n 's/.*Overall exposure level for vfiod.service: \([0-9.]*\).*/\1/p')
    [[ -n $score ]] || { echo "FAIL: no exposure score in the output"; echo "$out"; exit 1; }
    if ! awk -v s="$score" -v t="$threshold" 'BEGIN { exit !(s <= t) }'; then
      echo "FAIL: exposure $score is above the recorded $threshold"
      exit 1
    fi
    echo "OK: exposure $score <= $threshold"
    ;;
  sysusers)
    mkdir -p "$work/etc"
    : >"$work/etc/passwd"; : >"$work/etc/group"
    out=$(systemd-sysusers --root="$work" --dry-run "$unit_dir/vfiod.sysusers" 2>&1)
    echo "$out"
    for want in "group 'vfio-users'" "user 'vfiod'"; do
      grep -q "Creating $want" <<<"$out" || { echo "FAIL: would not create $want"; exit 1; }
    done
    echo "OK: sysusers creates vfio-users and vfiod"
    ;;
  *)
    echo "usage: $0 verify|security|sysusers UNIT_DIR [EXEC_PATH|THRESHOLD]"
    exit 2
    ;;
esac
