#!/usr/bin/env bash
# vm_image.sh CACHE_DIR
#
# Makes sure CACHE_DIR holds a guest kernel (Debian 12's 6.1 kernel package,
# fetched with apt-get download and unpacked with dpkg -x, never installed on
# the host) and an initramfs built from busybox-static, the needed modules and
# guest_init.sh. Prints two lines on stdout: the vmlinuz path and the initrd
# path. Idempotent; concurrent callers serialize on CACHE_DIR/.lock (flock).
#
# Exit status: 0 ready; 77 the VM cannot be had here (reason on stderr);
# anything else: a real error.
set -euo pipefail

readonly kSkip=77
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
readonly here
# Load order matters for insmod (no modprobe, no modules.dep in the guest):
# every module comes after the modules it depends on.
readonly kModules=(
  virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci
  netfs fscache 9pnet 9pnet_virtio 9p
  irqbypass vfio vfio_iommu_type1 vfio_virqfd vfio-pci-core vfio-pci
  lpc_ich
)

skip() { echo "vm_image: SKIP: $*" >&2; exit "$kSkip"; }
die() { echo "vm_image: ERROR: $*" >&2; exit 1; }

# Prints the Debian kernel ABI name (e.g. 6.1.0-56-amd64) the linux-image-amd64
# meta package depends on, or nothing when apt has no package lists.
resolve_kernel_abi() {
  if [[ -n ${VFIOD_VM_KERNEL_ABI:-} ]]; then
    echo "$VFIOD_VM_KERNEL_ABI"
    return
  fi
  command -v apt-cache >/dev/null || return 0
  LC_ALL=C apt-cache depends linux-image-amd64 2>/dev/null |
    sed -n 's/^ *Depends: linux-image-\([0-9][^ ]*\)$/\1/p' | head -n1
}

# Newest kernel already unpacked in the cache, for an offline machine.
newest_cached_abi() {
  local d
  d=$(find "$cache/kernel" -mindepth 2 -maxdepth 2 -name .complete 2>/dev/null | sort -V | tail -n1)
  [[ -n $d ]] && basename "$(dirname "$d")"
  return 0
}

# Downloads linux-image-ABI-unsigned and keeps vmlinuz plus kModules.
fetch_kernel() {
  local abi=$1 dest=$cache/kernel/$1 work
  command -v apt-get >/dev/null || return 1
  command -v dpkg >/dev/null || return 1
  work=$(mktemp -d "$cache/fetch.XXXXXX")
  # apt's _apt sandbox user must be able to write the download folder.
  chmod 0777 "$work"
  if ! (cd "$work" && apt-get download -q "linux-image-$abi-unsigned") \
      >"$work/apt.log" 2>&1; then
    echo "vm_image: apt-get download linux-image-$abi-unsigned failed:" >&2
    tail -n 5 "$work/apt.log" >&2
    rm -rf "$work"
    return 1
  fi
  dpkg -x "$work"/linux-image-*.deb "$work/root"
  local tree=$work/root/lib/modules/$abi/kernel m f
  rm -rf "$dest"
  mkdir -p "$dest/modules"
  cp "$work/root/boot/vmlinuz-$abi" "$dest/vmlinuz"
  for m in "${kModules[@]}"; do
    f=$(find "$tree" -name "$m.ko" -print -quit)
    [[ -n $f ]] || { rm -rf "$work"; die "module $m.ko is not in linux-image-$abi"; }
    cp "$f" "$dest/modules/"
  done
  rm -rf "$work"
  touch "$dest/.complete"
}

# Builds the initramfs for kernel ABI; the name carries a hash of everything
# that goes in, so a changed guest_init.sh gives a new image.
build_initrd() {
  local abi=$1 kdir=$cache/kernel/$1 key out stage m
  key=$( { cat "$here/guest_init.sh"; printf '%s\n' "${kModules[@]}";
           sha256sum "$busybox" "$kdir"/modules/*.ko; } | sha256sum | cut -c1-16)
  out=$cache/initrd-$abi-$key.gz
  if [[ ! -s $out ]]; then
    stage=$(mktemp -d "$cache/initrd.XXXXXX")
    mkdir -p "$stage"/{bin,dev,proc,sys,mnt/host,mnt/share,lib/modules}
    cp "$busybox" "$stage/bin/busybox"
    cp "$here/guest_init.sh" "$stage/init"
    chmod 0755 "$stage/init" "$stage/bin/busybox"
    for m in "${kModules[@]}"; do cp "$kdir/modules/$m.ko" "$stage/lib/modules/"; done
    printf '%s\n' "${kModules[@]}" >"$stage/lib/modules/order"
    (cd "$stage" && find . -print0 | LC_ALL=C sort -z |
       cpio --null -o -H newc --quiet -R 0:0) | gzip -1 >"$out.tmp"
    mv "$out.tmp" "$out"
    rm -rf "$stage"
  fi
  # Older images (an edited guest_init.sh) go once no starting run can still
  # be reading them.
  find "$cache" -maxdepth 1 -name 'initrd-*.gz' ! -name "${out##*/}" -mmin +10 -delete
  echo "$out"
}

main() {
  [[ $# -eq 1 ]] || die "usage: vm_image.sh CACHE_DIR"
  cache=$1
  busybox=${VFIOD_VM_BUSYBOX:-/bin/busybox}
  [[ -x $busybox ]] || skip "no $busybox (install busybox-static)"
  if LC_ALL=C ldd "$busybox" >/dev/null 2>&1; then
    skip "$busybox is dynamically linked (install busybox-static)"
  fi
  command -v cpio >/dev/null || skip "no cpio (install cpio)"
  mkdir -p "$cache" || skip "cannot create cache folder $cache"

  exec 9>"$cache/.lock"
  flock 9

  local abi
  abi=$(resolve_kernel_abi)
  # A machine whose apt lists were cleaned knows no kernel package: as root,
  # refresh them once, unless a kernel is already cached.
  if [[ -z $abi && -z $(newest_cached_abi) && $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    echo "vm_image: no apt lists know linux-image-amd64; running apt-get update" >&2
    apt-get update -qq >/dev/null 2>&1 || true
    abi=$(resolve_kernel_abi)
  fi
  if [[ -n $abi && ! -e $cache/kernel/$abi/.complete ]]; then
    fetch_kernel "$abi" || abi=""
  fi
  if [[ -z $abi || ! -e $cache/kernel/$abi/.complete ]]; then
    abi=$(newest_cached_abi)
    [[ -n $abi ]] || skip "no Debian 6.1 kernel package (apt-cache depends linux-image-amd64 found nothing, or the download failed; try apt-get update)"
  fi
  local initrd
  initrd=$(build_initrd "$abi")
  echo "$cache/kernel/$abi/vmlinuz"
  echo "$initrd"
}

main "$@"
