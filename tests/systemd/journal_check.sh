#!/usr/bin/env bash
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
# Prints one line per check; exits 1 on the first failure. (grep -q reads
# here-strings, not pipes: with pipefail, a writer cut off by grep -q's early
# exit would fail the check.)
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

# entries MATCH...: the matching entries in export format (FIELD=value lines,
# a blank line after each entry).
entries() { journalctl --no-pager -o export "${extra[@]}" "$@"; }

# values FIELD: every value of FIELD in the entries on stdin, one a line.
values() { sed -n "s/^$1=//p"; }

# check KIND FIELD...: the entries of KIND for the uid carry each FIELD.
check() {
  local kind=$1 found count field message copies
  shift
  local name="ID_$kind"
  local id=${!name}
  found=$(entries VFIOD_UID="$uid" MESSAGE_ID="$id")
  count=$(grep -c '^MESSAGE_ID=' <<<"$found" || true)
  [ "$count" -ge 1 ] || fail "no $kind entry (journalctl VFIOD_UID=$uid MESSAGE_ID=$id)"
  for field in "_TRANSPORT=journal" "SYSLOG_IDENTIFIER=vfiod" "VFIOD_EVENT=$kind" \
      "VFIOD_UID=$uid" PRIORITY MESSAGE "$@"; do
    case $field in
      *=*) grep -qx "$field" <<<"$found" || fail "$kind entry without $field" ;;
      *) grep -q "^$field=" <<<"$found" || fail "$kind entry without $field" ;;
    esac
  done
  # Once in the journal: no plain entry (one without MESSAGE_ID, from
  # spdlog or stderr) with the same text.
  while IFS= read -r message; do
    copies=$(entries MESSAGE="$message" | awk -v RS= '!/(^|\n)MESSAGE_ID=/ { n++ } END { print n + 0 }')
    [ "$copies" -eq 0 ] || fail "'$message' is also in the journal as $copies plain entries"
  done < <(values MESSAGE <<<"$found")
  echo "OK: $count $kind entries for uid $uid with $*"
}

check connection_opened VFIOD_PID VFIOD_CONNECTION
check container_created VFIOD_CONTAINER VFIOD_BDF VFIOD_SESSION
check mapping_created VFIOD_CONTAINER VFIOD_MAPPING VFIOD_BYTES VFIOD_IOVA
check mapping_freed VFIOD_CONTAINER VFIOD_MAPPING VFIOD_BYTES
check quota_refused VFIOD_METHOD ERRNO

mapped=$(entries VFIOD_UID="$uid" MESSAGE_ID="$ID_mapping_created" | values VFIOD_MAPPING)
freed=$(entries VFIOD_UID="$uid" MESSAGE_ID="$ID_mapping_freed" | values VFIOD_MAPPING)
for m in $freed; do
  grep -qx "$m" <<<"$mapped" || fail "mapping $m freed, but no entry mapped it"
done
echo "OK: every freed mapping ($(echo $freed)) was mapped by uid $uid"

all=$(entries VFIOD_UID="$uid" | grep -c '^MESSAGE_ID=' || true)
echo "OK: journalctl VFIOD_UID=$uid finds $all vfiod entries"
