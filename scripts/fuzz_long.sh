#!/usr/bin/env bash
# A long fuzzing run in segments, for the recorded 10^7 runs of
# tests/fuzz/README.md: a machine here does not outlive a session, so a run
# is resumed, and each segment's executions are kept in RUNDIR/segments.txt
# (one line per segment: name, binary, start, executions, result).
#   scripts/fuzz_long.sh TARGET RUNDIR [WORKER]
# The first start copies build-fuzz/tests/fuzz/fuzz_TARGET into RUNDIR (so a
# rebuild of the tree does not change a running segment) and notes its commit;
# a later start with another binary needs a new RUNDIR. WORKER (1, 2, ...)
# lets two runs share RUNDIR's working corpus (libFuzzer reloads what the
# other adds). A segment runs what is left of VFIOD_FUZZ_TOTAL (default
# 10^7) over all segments; a finding is kept in RUNDIR/findings/ and the run
# goes on with a new segment (at most five findings). SIGTERM to this script
# ends the segment with libFuzzer's final stats and records it (SIGINT too,
# unless the script was started in the background of a non-interactive
# shell, which starts it with SIGINT ignored: that cannot be trapped).
# The run takes only what other work leaves: nice 19 and, since it is its own
# session under autogroup scheduling, its autogroup's nice 19 too.
set -uo pipefail
target=${1:?usage: fuzz_long.sh TARGET RUNDIR [WORKER]}
rundir=${2:?usage: fuzz_long.sh TARGET RUNDIR [WORKER]}
worker=${3:-1}
total=${VFIOD_FUZZ_TOTAL:-10000000}
tree=$(cd "$(dirname "$0")/.." && pwd)

mkdir -p "$rundir/corpus" "$rundir/findings"
cd "$rundir" || exit 1
bin=./fuzz_$target
if [[ ! -x $bin ]]; then
  cp "$tree/build-fuzz/tests/fuzz/fuzz_$target" "$bin"
  git -C "$tree" rev-parse --short HEAD >binary.txt
fi
echo 19 >/proc/self/autogroup 2>/dev/null || true
renice -n 19 $$ >/dev/null
export ASAN_OPTIONS=${ASAN_OPTIONS:-malloc_context_size=2:quarantine_size_mb=32}

executed() { [[ -f segments.txt ]] && awk '{ n += $4 } END { print n + 0 }' segments.txt || echo 0; }

child=0
stopping=0
trap 'stopping=1; ((child)) && kill -INT "$child"' INT TERM
options=(-timeout=30 -rss_limit_mb=4096 -max_len=8192 -print_final_stats=1
         -report_slow_units=10 "-artifact_prefix=findings/w$worker-")
[[ -f $tree/tests/fuzz/$target.dict ]] && options+=("-dict=$tree/tests/fuzz/$target.dict")
while ((!stopping)); do
  left=$((total - $(executed)))
  ((left > 0)) || { echo "fuzz_long: $total executions reached"; break; }
  segment=1
  [[ -f segments.txt ]] && segment=$(($(wc -l <segments.txt) + 1))
  segment+=-w$worker
  log=log.seg$segment.txt
  start=$(date -u +%Y-%m-%dT%H:%MZ)
  before=$(find findings -type f | wc -l)
  "$bin" "${options[@]}" -runs="$left" corpus "$tree/tests/fuzz/corpus/$target" \
    >"$log" 2>&1 &
  child=$!
  wait "$child"
  while kill -0 "$child" 2>/dev/null; do wait "$child"; done
  child=0
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
  # A killed fuzzer prints no final stats: its last progress line counts.
  [[ -n $runs ]] || runs=$(grep -ao '^#[0-9]*' "$log" | tail -n 1 | tr -d '#')
  result="no finding"
  (($(find findings -type f | wc -l) > before)) && result="finding (see $log)"
  echo "$segment $(cat binary.txt) $start ${runs:-0} $result" >>segments.txt
  echo "fuzz_long: segment $segment: ${runs:-0} executions, $result;" \
    "$(executed) of $total in all"
  (($(find findings -type f | wc -l) < 5)) || { echo "fuzz_long: five findings, stopped"; break; }
done
