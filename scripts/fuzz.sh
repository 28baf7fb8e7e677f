#!/usr/bin/env bash
# Builds the libFuzzer targets of tests/fuzz (clang-16, ASan+UBSan) in
# build-fuzz and runs each for SECONDS (default 60): first every input of
# tests/fuzz/regressions/<target>/ once, then fuzzing from the seed corpus
# tests/fuzz/corpus/<target>/ into a temporary working corpus (the tree is not
# modified). Prints each target's executions; exits non-zero on a finding,
# whose input is kept in build-fuzz/findings/.
#   scripts/fuzz.sh [SECONDS] [TARGET...]     TARGET: rpc, config, dma, state
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
shift || true
targets=("$@")
((${#targets[@]})) || targets=(rpc config dma state)

launcher=()
if command -v ccache >/dev/null; then
  export CCACHE_BASEDIR=$PWD
  launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
fi
# -O2 without NDEBUG: the asserts stay on. Warnings are not errors here: the
# tree's warning gate is the g++ build.
CXX=clang++-16 cmake -S . -B build-fuzz -DVFIOD_FUZZ=ON -DVFIOD_BENCHMARKS=OFF \
  -DVFIOD_WERROR=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O2 -g" "${launcher[@]}" >/dev/null
cmake --build build-fuzz -j"$(nproc)" --target "${targets[@]/#/fuzz_}"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p build-fuzz/findings
for target in "${targets[@]}"; do
  bin=build-fuzz/tests/fuzz/fuzz_$target
  options=(-timeout=30 -rss_limit_mb=4096 -max_len=8192
           "-artifact_prefix=build-fuzz/findings/$target-")
  if [[ -f tests/fuzz/$target.dict ]]; then
    options+=("-dict=tests/fuzz/$target.dict")
  fi
  regressions=("tests/fuzz/regressions/$target"/*)
  if [[ -e ${regressions[0]} ]]; then
    echo "== fuzz_$target: ${#regressions[@]} regression inputs"
    "$bin" "${options[@]}" "${regressions[@]}" >"$work/$target.replay.log" 2>&1 ||
      { tail -n 40 "$work/$target.replay.log"; exit 1; }
  fi
  echo "== fuzz_$target: ${seconds}s from tests/fuzz/corpus/$target"
  mkdir -p "$work/$target"
  "$bin" "${options[@]}" -max_total_time="$seconds" -print_final_stats=1 \
    "$work/$target" "tests/fuzz/corpus/$target" >"$work/$target.log" 2>&1 ||
    { tail -n 60 "$work/$target.log"; exit 1; }
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/$target.log")
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$work/$target.log")
  cov=$(grep -o 'cov: [0-9]* ft: [0-9]* corp: [0-9/a-zA-Z]*' "$work/$target.log" | tail -n 1)
  echo "fuzz_$target: $execs execs ($rate/s), $cov, no finding"
done
