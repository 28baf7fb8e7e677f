#!/usr/bin/env bash
# journal_check_test.sh JOURNAL_CHECK: runs journal_check.sh against a fake
# journalctl serving a fixture journal (export format), so the checks are
# seen to pass on a good journal and to fail on each kind of bad one.
set -euo pipefail

check=$1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# The fake: options are ignored but -o (json gives one JSON object a line, as
# journalctl does; any other mode the fixture's export text), FIELD=VALUE
# arguments must all match; prints the matching entries of $FIXTURE. --sync
# does nothing.
mkdir "$work/bin"
cat >"$work/bin/journalctl" <<'FAKE'
#!/usr/bin/env bash
matches=()
mode=export
while [ $# -gt 0 ]; do
  case $1 in
    --sync) exit 0 ;;
    -o) mode=$2; shift 2 ;;
    -*) shift ;;
    *) matches+=("$1"); shift ;;
  esac
done
select_entries() {
  awk -v RS= -v ORS='\n\n' -v want="$(printf '%s\n' "${matches[@]+"${matches[@]}"}")" '
    BEGIN { n = split(want, m, "\n") }
    { ok = 1
      for (i = 1; i <= n; i++) if (m[i] != "" && index("\n" $0 "\n", "\n" m[i] "\n") == 0) ok = 0
      if (ok) print }' "$FIXTURE"
}
if [ "$mode" = json ]; then
  select_entries | jq -c -R -s 'split("\n\n")[] | select(length > 0) | split("\n")
    | map(select(length > 0) | capture("^(?<key>[^=]+)=(?<value>.*)$")) | from_entries'
else
  select_entries
fi
FAKE
chmod +x "$work/bin/journalctl"

entry() {  # entry KIND ID MESSAGE FIELD...: one structured vfiod entry
  local kind=$1 id=$2 message=$3
  shift 3
  printf '%s\n' "__CURSOR=c" "_TRANSPORT=journal" "PRIORITY=6" "SYSLOG_IDENTIFIER=vfiod" \
    "MESSAGE=$message" "MESSAGE_ID=$id" "VFIOD_EVENT=$kind" "VFIOD_UID=1000" "$@"
  echo
}

good() {
  entry connection_opened ecc10f2f19c643d6bb69aa90bacd7368 \
    "rpc: connection 1 from uid 1000 gid 1000 pid 77" VFIOD_PID=77 VFIOD_CONNECTION=1
  entry container_created e632dff8e23a4bf38af32cbc7ec61b86 \
    "container 2 created by uid 1000 (1 groups)" VFIOD_SESSION=1 VFIOD_CONTAINER=2 \
    VFIOD_BDF=0000:00:03.0
  entry mapping_created 478d748adf2c400f86230eaf5a65ee7b \
    "mapping 3: container 2 iova 0x100000 size 0x200000 memfd (1 ioctls)" VFIOD_CONTAINER=2 \
    VFIOD_MAPPING=3 VFIOD_BYTES=2097152 VFIOD_IOVA=0x100000
  entry mapping_freed 34bc9e62edba4a1e942f69ea0c9486ee \
    "mapping 3 freed: container 2, 0x200000 bytes unmapped (1 ioctls)" VFIOD_CONTAINER=2 \
    VFIOD_MAPPING=3 VFIOD_BYTES=2097152
  entry quota_refused 5dab0e95a2c5494fb8e3b61ae2154141 \
    "dma.alloc from uid 1000: Quota exceeded (-32004): quota [EDQUOT]" VFIOD_METHOD=dma.alloc \
    ERRNO=122
}

run() {  # run NAME EXPECTED_RC: journal_check.sh on $FIXTURE
  local name=$1 expected=$2 rc=0 out
  out=$(PATH="$work/bin:$PATH" FIXTURE="$work/journal" "$check" 1000 --boot 2>&1) || rc=$?
  if [ "$rc" -ne "$expected" ]; then
    echo "FAIL: $name: journal_check.sh exited $rc, expected $expected:"
    echo "$out"
    exit 1
  fi
  echo "ok: $name (rc $rc): $(echo "$out" | tail -1)"
}

good >"$work/journal"
run "a complete journal" 0

good | awk -v RS= -v ORS='\n\n' '!/VFIOD_EVENT=quota_refused/' >"$work/journal"
run "no quota refusal" 1

{ good; printf '%s\n\n' "_TRANSPORT=stdout" \
  "MESSAGE=mapping 3: container 2 iova 0x100000 size 0x200000 memfd (1 ioctls)"; } >"$work/journal"
run "a mapping logged twice" 1

good | awk -v RS= -v ORS='\n\n' '/mapping_freed/ { sub(/VFIOD_MAPPING=3/, "VFIOD_MAPPING=9") } 1' \
  >"$work/journal"
run "a freed mapping nobody mapped" 1

good | sed '/^VFIOD_IOVA=/d' >"$work/journal"
run "a mapping without its IOVA" 1

{ good; entry mapping_created 478d748adf2c400f86230eaf5a65ee7b \
  "mapping 4: container 2 iova 0x300000 size 0x200000 memfd (1 ioctls)" VFIOD_CONTAINER=2 \
  VFIOD_MAPPING=4 VFIOD_BYTES=2097152; } >"$work/journal"
run "one of two mappings without its IOVA" 1

good | sed 's/^_TRANSPORT=journal$/_TRANSPORT=stdout/' >"$work/journal"
run "entries that are not native" 1

good | sed 's/^VFIOD_UID=1000$/VFIOD_UID=1001/' >"$work/journal"
run "another user's entries" 1
echo "OK: journal_check.sh passes a complete journal and fails each bad one"
