#!/usr/bin/env bash
# Style gate: clang-format must leave every C++ file unchanged, and (with
# --tidy) clang-tidy-16 must report nothing for the daemon, proto, client and
# bench sources (BUILD_DIR configured with the benchmarks, the default).
# clang-tidy 14 crashes on some of this code; 16 is in Debian 12.
# Usage: scripts/lint.sh [--tidy BUILD_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
mapfile -t files < <(git ls-files '*.cc' '*.h')
echo "lint: clang-format on ${#files[@]} files"
clang-format --dry-run --Werror "${files[@]}"
if [[ "${1:-}" == "--tidy" ]]; then
  build=${2:?usage: scripts/lint.sh --tidy BUILD_DIR}
  mapfile -t srcs < <(git ls-files 'daemon/*.cc' 'proto/*.cc' 'client/*.cc' 'bench/*.cc')
  echo "lint: clang-tidy-16 on ${#srcs[@]} sources"
  out=$(printf '%s\n' "${srcs[@]}" | xargs -P "$(nproc)" -n 4 clang-tidy-16 -p "$build" --quiet 2>/dev/null | grep -E "warning:|error:" || true)
  if [[ -n "$out" ]]; then
    echo "$out" | sort -u
    exit 1
  fi
fi
echo "lint: clean"
