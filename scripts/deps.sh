#!/usr/bin/env bash
# Installs what building, testing and the VM demo need, from Debian 12's
# packages. Idempotent: installs only what is missing. Needs root.
set -euo pipefail
pkgs=(build-essential cmake pkg-config git
      libboost-dev libspdlog-dev libfmt-dev nlohmann-json3-dev libcli11-dev
      libgtest-dev libgmock-dev libbenchmark-dev libsystemd-dev systemd
      qemu-system-x86 cpio busybox-static kmod ccache clang-format clang-tidy-16
      clang-16 libclang-rt-16-dev libfuzzer-16-dev
      lintian  # the package_deb test (dpkg-dev comes with build-essential)
      jq)  # vm_systemd reads vfioctl --json replies in the guest
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "deps: need root to install: ${missing[*]} (re-run with sudo)" >&2
    exit 1
  fi
  echo "deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
