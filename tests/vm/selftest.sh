#!/usr/bin/env bash
# shellcheck disable=SC2016  # the $ strings below are meant literally
# selftest.sh: checks vm_run.sh from the OUTSIDE, on the host: exit status,
# argument quoting and environment reach the guest command, stdout and stderr
# come back apart, --log writes the console, a hang past --timeout fails with
# 124 and shows the log, a missing QEMU is a skip (77), a guest that panics
# before the command starts is booted again (at most twice) and one that dies
# after it is not. Runs on the kernel VFIOD_VM_KERNEL names. Boots the guest
# four times and lets it panic early three times (a few seconds each).
set -u
vm_run=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/vm_run.sh
readonly vm_run
work=$(mktemp -d "${TMPDIR:-/tmp}/vfiod-vm-selftest.XXXXXX")
trap 'rm -rf "$work"' EXIT
failures=0

check() {  # check DESCRIPTION COMMAND...
  local what=$1
  shift
  if "$@"; then echo "ok - $what"; else echo "not ok - $what"; failures=$((failures + 1)); fi
}

# 1. A missing QEMU is a skip, before anything is fetched or booted.
VFIOD_VM_QEMU=/nonexistent/qemu "$vm_run" -- true >"$work/skip.out" 2>&1
rc=$?
check "missing QEMU exits 77 (got $rc)" [ "$rc" = 77 ]
check "missing QEMU says SKIP" grep -q '^vm_run: SKIP: ' "$work/skip.out"

# Usage errors are 2, before anything boots.
"$vm_run" --as-user bob -- true >/dev/null 2>&1
check "a non-numeric --as-user is a usage error" [ "$?" = 2 ]
"$vm_run" --timeout 10 >/dev/null 2>&1
check "no command is a usage error" [ "$?" = 2 ]
"$vm_run" -- /nonexistent/command >/dev/null 2>&1
check "a missing command is 127, before any boot" [ "$?" = 127 ]

# 2. Status, quoting, environment and the two output streams, in one boot
# after one that panics before the command starts (VFIOD_VM_FAIL_BOOTS, the
# harness's test hook). The guest command prints its arguments one per line
# between brackets.
VFIOD_VM_FAIL_BOOTS=1 GTEST_FILTER='Foo.*' "$vm_run" --log "$work/console.log" --env "VFIOD_SELFTEST=a b" -- \
  bash -c 'printf "[%s]\n" "$@"; echo "env=$VFIOD_SELFTEST gtest=$GTEST_FILTER";
           echo to-stderr >&2; exit 42' argv0 'two  spaces' '$HOME' "it's" '' \
  >"$work/out" 2>"$work/err"
rc=$?
if [[ $rc -eq 77 ]]; then
  echo "selftest: SKIP: the VM is not available here"
  exit 77
fi
printf '[%s]\n' 'two  spaces' '$HOME' "it's" '' >"$work/expected"
echo "env=a b gtest=Foo.*" >>"$work/expected"
check "exit status 42 comes back (got $rc)" [ "$rc" = 42 ]
check "arguments arrive intact, stdout comes back" cmp -s "$work/expected" "$work/out"
check "stderr comes back on stderr" grep -qx to-stderr "$work/err"
check "stderr does not leak into stdout" sh -c "! grep -q to-stderr '$work/out'"
check "--log FILE holds the guest console" grep -q 'vm-init: .*command exited with 42' "$work/console.log"
check "a failed command's logs are named" grep -q 'vm_run: command exited 42' "$work/err"
check "the booted kernel is named" grep -q "^vm_run: kernel [0-9].* (${VFIOD_VM_KERNEL:-lts})$" "$work/err"
# The first boot dies of the injected panic (no root to mount) or of one of
# TCG's own early deaths that come before it (7.3's "Oops: int3" at 1.8 s,
# "timer doesn't work"): either way the harness must say why and boot again.
check "an early panic is booted again, and said so" \
  grep -q '^vm_run: guest died before the command started (.*\(Unable to mount root fs\|Oops\|Kernel panic\).*); .*booting again (2 of 3)$' "$work/err"
# The hook fails the first boot only: no later boot lacks its root (TCG's
# own panics may add boots, and the harness rightly boots those again too).
check "only once" sh -c "! grep -q 'Unable to mount root fs.*\(booting again ([3-9] of\|giving up\)' '$work/err'"
rm -rf "$(sed -n 's|.*dmesg: \(.*\)/share/dmesg.log$|\1|p' "$work/err")"

# 3. Early panics past the retries: given up with 125 after the last boot.
VFIOD_VM_FAIL_BOOTS=2 VFIOD_VM_BOOT_RETRIES=1 "$vm_run" -- true >"$work/panic.out" 2>&1
rc=$?
check "early panics on every boot exit 125 (got $rc)" [ "$rc" = 125 ]
check "the last early panic gives up" grep -q 'giving up after 2 boot(s)$' "$work/panic.out"
rm -rf "$(sed -n 's/.*(run folder kept: \(.*\))$/\1/p' "$work/panic.out")"

# 4. A kernel crash after the command started is a failure, never retried.
"$vm_run" -- sh -c 'echo c >/proc/sysrq-trigger' >"$work/crash.out" 2>&1
rc=$?
check "a crash after the start exits 125 (got $rc)" [ "$rc" = 125 ]
check "a crash after the start is not retried" sh -c "! grep -q 'booting again' '$work/crash.out'"
check "a crash after the start says so" grep -q 'after the command started.*not retried' "$work/crash.out"
rm -rf "$(sed -n 's/.*(run folder kept: \(.*\))$/\1/p' "$work/crash.out")"

# 5. A hang: the command never ends, the timeout kills the guest.
"$vm_run" --timeout 8 --log "$work/hang.log" -- sleep 600 >"$work/hang.out" 2>&1
rc=$?
check "a hang exits 124 (got $rc)" [ "$rc" = 124 ]
check "a hang is reported with the log path" grep -q "guest console log: $work/hang.log" "$work/hang.out"
check "a hang shows the last console lines" grep -q -- '---- last lines of the guest console' "$work/hang.out"
check "a hang after the start is not retried" sh -c "! grep -q 'booting again' '$work/hang.out'"
rm -rf "$(sed -n 's/.*(run folder kept: \(.*\))$/\1/p' "$work/hang.out")"

if [[ $failures -ne 0 ]]; then
  echo "---- stdout of the guest run ----"; cat "$work/out"
  echo "---- stderr of the guest run ----"; cat "$work/err"
  echo "---- output of the early panic run ----"; cat "$work/panic.out"
  echo "---- output of the crash run ----"; cat "$work/crash.out"
  echo "---- output of the hang run ----"; cat "$work/hang.out"
fi
echo "selftest: $failures failure(s)"
[[ $failures -eq 0 ]]
