#!/usr/bin/env bash
# The README's test command: installs dependencies, builds vfiod twice (a
# release build whose tests include the VM stage, and an ASan+UBSan build for
# the unit tests) and the transport once more under TSan, runs every test,
# then each fuzz target briefly. Exits non-zero when any test fails.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/deps.sh
jobs=$(nproc)
# ccache (installed by deps.sh) makes a rebuild of an unchanged tree cheap,
# also from another clone: paths under the source folder hash relatively.
launcher=()
if command -v ccache >/dev/null; then
  export CCACHE_BASEDIR=$PWD
  launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
fi

echo "== build (RelWithDebInfo)"
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo "${launcher[@]}" >/dev/null
cmake --build build -j"$jobs"
echo "== tests (host and VM)"
ctest --test-dir build --output-on-failure -j"$jobs"

echo "== build (ASan+UBSan)"
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DVFIOD_SANITIZE=ON -DVFIOD_BENCHMARKS=OFF \
  "${launcher[@]}" >/dev/null
cmake --build build-asan -j"$jobs"
echo "== unit tests under ASan+UBSan"
ctest --test-dir build-asan --output-on-failure -j"$jobs" -LE vm

# The transport's output path is shared by the connection's strand and the
# workers that write replies (daemon/rpc/connection.h): its tests also run
# under ThreadSanitizer, which stops at the first race (halt_on_error).
echo "== build (TSan: the transport and its tests)"
cmake -S . -B build-tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DVFIOD_TSAN=ON -DVFIOD_BENCHMARKS=OFF \
  "${launcher[@]}" >/dev/null
cmake --build build-tsan -j"$jobs" --target vfiod_rpc_tests
echo "== transport tests under TSan"
TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 build-tsan/tests/rpc/vfiod_rpc_tests

echo "== fuzz targets (20 s each from the seed corpus, regressions replayed)"
./scripts/fuzz.sh 20
