#!/usr/bin/env bash
# The benchmarks (BENCHMARKS.md): builds the bench programs, runs the
# micro-benchmarks (item 7) and the RPC benchmark (item 6) on the host, and
# items 1-5 inside the QEMU test VM on the real kernel; prints the tables and
# writes every figure as JSON to bench-results/<kind>-<UTC stamp>.json (plus
# <kind>-latest.json). Not part of the test command.
#
# Environment: VFIOD_BENCH_BUILD (build dir, default build-bench),
# VFIOD_BENCH_LOOPS (map/unmap pairs per figure of items 2-5, default 8),
# VFIOD_BENCH_MAP_LOOPS (interleaved rounds per map table row, item 1, default 30),
# VFIOD_BENCH_SIZES (map table sizes, default 256M,1G),
# VFIOD_BENCH_SKIP (comma list of micro,rpc,vm to leave out),
# VFIOD_BENCH_SECTIONS (the VM's sections, default all: map,batch,contig,place,bar,barvfiod),
# VFIOD_VM_KERNEL (lts or newest, the guest kernel: run once per kernel),
# VFIOD_VM_IVSHMEM_SIZE (the ivshmem BAR, default here 1G: the BAR sections),
# VFIOD_VM_MEM (guest RAM, default 6G: the map table holds a raw buffer and a
# memfd of each row at once, and 2 GiB of it are two 1G hugepages reserved at boot).
set -euo pipefail
cd "$(dirname "$0")/.."

build=${VFIOD_BENCH_BUILD:-build-bench}
loops=${VFIOD_BENCH_LOOPS:-8}
map_loops=${VFIOD_BENCH_MAP_LOOPS:-30}
sizes=${VFIOD_BENCH_SIZES:-256M,1G}
skip=",${VFIOD_BENCH_SKIP:-},"
out=bench-results
stamp=$(date -u +%Y%m%dT%H%M%SZ)
jobs=$(( $(nproc) < 2 ? $(nproc) : 2 ))
status=0

echo "== build ($build)"
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DVFIOD_BENCHMARKS=ON >/dev/null
cmake --build "$build" -j"$jobs" --target vfiod_bench_micro vfiod_bench_rpc vfiod_bench_guest vfiod
mkdir -p "$out"

# save KIND FILE: keeps FILE as KIND-<stamp>.json and KIND-latest.json.
save() {
  if [[ ! -s $2 ]]; then
    echo "no $1 results (the program failed before writing them)"
    status=1
    return
  fi
  cp "$2" "$out/$1-$stamp.json"
  cp "$2" "$out/$1-latest.json"
  echo "-> $out/$1-$stamp.json"
}

if [[ $skip != *,micro,* ]]; then
  echo; echo "== 7. micro-benchmarks (host): planner, allocator, contiguity scanner"
  "$build/bench/vfiod_bench_micro" --benchmark_out="$out/.micro.json" \
    --benchmark_out_format=json || status=1
  save micro "$out/.micro.json"
fi

if [[ $skip != *,rpc,* ]]; then
  echo; echo "== 6. RPC (host, vfiod on the model kernel)"
  "$build/bench/vfiod_bench_rpc" --vfiod "$build/daemon/vfiod" --json "$out/.rpc.json" || status=1
  save rpc "$out/.rpc.json"
fi

if [[ $skip != *,vm,* ]]; then
  echo; echo "== 1-5. in the test VM (real kernel, TCG: ratios are the result)"
  vm_status=0
  VFIOD_VM_MEM=${VFIOD_VM_MEM:-6G} VFIOD_VM_IVSHMEM_SIZE=${VFIOD_VM_IVSHMEM_SIZE:-1G} VFIOD_VM_HUGEPAGES_1G=${VFIOD_VM_HUGEPAGES_1G:-2} \
    tests/vm/vm_run.sh --timeout 3000 --env "VFIOD_BENCH_HOST_LOADAVG=$(cat /proc/loadavg)" -- \
    "$PWD/$build/bench/vfiod_bench_guest" --vfiod "$PWD/$build/daemon/vfiod" \
    --loops "$loops" --map-loops "$map_loops" --sizes "$sizes" ${VFIOD_BENCH_SECTIONS:+--sections "$VFIOD_BENCH_SECTIONS"} \
    >"$out/.vm.json" || vm_status=$?
  if [[ $vm_status -eq 77 ]]; then
    echo "VM not available: items 1-5 skipped"
  else
    [[ $vm_status -eq 0 ]] || status=1
    # The guest's stdout comes through a serial port: keep the JSON line only.
    tr -d '\r' <"$out/.vm.json" | grep '^{' >"$out/.vm.clean.json" || true
    save vm "$out/.vm.clean.json"
  fi
fi
rm -f "$out"/.micro.json "$out"/.rpc.json "$out"/.vm.json "$out"/.vm.clean.json
exit "$status"
