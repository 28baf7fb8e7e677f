#!/usr/bin/env bash
# shellcheck disable=SC2034  # the ID_* are read by name in check (${!name})
# journal_check.sh UID [JOURNALCTL_ARGS...]
# Run in a guest whose vfiod runs under systemd (vfiod.service, stderr to the
# journal), after a client of uid UID connected, created a container, mapped
# and freed memory and was refused by its quota. Checks, with journalctl
# (extra arguments such as --boot or --since=... narrow the search), that:
#  - `journalctl VFIOD_UID=UID MESSAGE_ID=<id>` finds each of those events,
#    sent natively (_TRANSPORT=journal) with SYSLOG_IDENTIFIER=vfiod, its
#    VFIOD_EVENT name and the fields that kind carries;
#  - the freed mapping is one the client mapped (same VFIOD_MAPPING);
#  - each event is in the journal once: no plain entry (without MESSAGE_ID)
#    has the same MESSAGE (vfiod does not log an event twice).
# Prints one line per check; exits 1 on the first failure. Entries are read
# as JSON (`journalctl -o json`, one object a line) with jq: the export
# format's binary fields (journald's _SELINUX_CONTEXT, whose length prefix
# can hold a newline byte) cut entries in two for a line-based reader, which
# once made one native entry look like a native one plus a plain one.
# The MESSAGE_IDs are those of daemon/journal/event.cc (a host test checks it).
set -euo pipefail

[ $# -ge 1 ] || { echo "usage: $0 UID [JOURNALCTL_ARGS...]" >&2; exit 2; }
uid=$1
shift
extra=("$@")

ID_connection_opened=ecc10f2f19c643d6bb69aa90bacd7368
ID_container_created=e632dff8e23a4bf38af32cbc7ec61b86
ID_mapping_created=478d748adf2c400f86230eaf5a65ee7b
ID_mapping_freed=34bc9e62edba4a1e942f69ea0c9486ee
ID_quota_refused=5dab0e95a2c5494fb8e3b61ae2154141

fail() { echo "FAIL: $*"; exit 1; }

journalctl --sync 2>/dev/null || true  # journald writes what it has (needs privileges)

# entries MATCH...: the matching entries, one JSON object a line.
entries() { journalctl --no-pager -o json "${extra[@]}" "$@"; }

# check KIND FIELD...: every entry of KIND for the uid carries each FIELD
# (NAME, or NAME=VALUE for an exact value). One journalctl and one jq a kind
# (each jq start costs about a second under TCG). The entries' messages are
# kept in $messages for the once-only check below.
messages=
check() {
  local kind=$1 found count missing
  shift
  local name="ID_$kind"
  local id=${!name}
  found=$(entries VFIOD_UID="$uid" MESSAGE_ID="$id")
  # Prints the entry count, then each FIELD some entry lacks.
  missing=$(jq -r -s '. as $e | length, ($ARGS.positional[]
      | if test("=") then (split("=") as $p | select(any($e[]; .[$p[0]] != ($p[1:] | join("=")))))
        else (. as $n | select(any($e[]; has($n) | not))) end)' \
    --args "_TRANSPORT=journal" "SYSLOG_IDENTIFIER=vfiod" "VFIOD_EVENT=$kind" "VFIOD_UID=$uid" \
    PRIORITY MESSAGE "$@" <<<"$found")
  count=$(head -n1 <<<"$missing")
  [ "$count" -ge 1 ] || fail "no $kind entry (journalctl VFIOD_UID=$uid MESSAGE_ID=$id)"
  missing=$(tail -n +2 <<<"$missing")
  [ -z "$missing" ] || fail "$kind entry without $(xargs <<<"$missing")"
  messages+=$(jq -r .MESSAGE <<<"$found")$'\n'
  echo "OK: $count $kind entries for uid $uid with $*"
}

check connection_opened VFIOD_PID VFIOD_CONNECTION
check container_created VFIOD_CONTAINER VFIOD_BDF VFIOD_SESSION
check mapping_created VFIOD_CONTAINER VFIOD_MAPPING VFIOD_BYTES VFIOD_IOVA
check mapping_freed VFIOD_CONTAINER VFIOD_MAPPING VFIOD_BYTES
check quota_refused VFIOD_METHOD ERRNO

# Once in the journal: no plain entry (one without MESSAGE_ID, from spdlog
# or stderr) has the text of one of those events.
plain=$(entries | jq -r 'select(has("MESSAGE_ID") | not) | .MESSAGE | strings')
twice=$(grep -Fx -f <(grep -v '^$' <<<"$messages") <<<"$plain" || true)
if [ -n "$twice" ]; then
  while IFS= read -r message; do
    journalctl --no-pager -o verbose "${extra[@]}" MESSAGE="$message"
  done <<<"$twice"
  fail "also in the journal as plain entries (above): $(head -n1 <<<"$twice")"
fi
echo "OK: each of those events is in the journal once (no plain copy)"

mapped=$(entries VFIOD_UID="$uid" MESSAGE_ID="$ID_mapping_created" | jq -r .VFIOD_MAPPING)
freed=$(entries VFIOD_UID="$uid" MESSAGE_ID="$ID_mapping_freed" | jq -r .VFIOD_MAPPING)
for m in $freed; do
  grep -qx "$m" <<<"$mapped" || fail "mapping $m freed, but no entry mapped it"
done
echo "OK: every freed mapping ($(xargs <<<"$freed")) was mapped by uid $uid"

all=$(entries VFIOD_UID="$uid" | jq -s '[.[] | select(has("MESSAGE_ID"))] | length')
echo "OK: journalctl VFIOD_UID=$uid finds $all vfiod entries"
