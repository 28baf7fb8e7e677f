#!/usr/bin/env bash
# vm_image.sh CACHE_DIR
#
# Makes sure CACHE_DIR holds a guest kernel and an initramfs built from
# busybox-static, the needed modules, guest_init.sh and guest_systemd.sh
# (sourced by it for the systemd boot). VFIOD_VM_KERNEL picks
# the kernel: "lts" (default) is Debian 12's 6.1 kernel package, "newest" the
# newest kernel of the suite trixie-backports (VFIOD_VM_NEWEST_SUITE), read
# through a private apt setup in CACHE_DIR that leaves the host's apt alone.
# Packages are fetched with apt-get download and unpacked with dpkg -x, never
# installed on the host. Prints three lines on stdout: the vmlinuz path, the
# initrd path and the kernel release (e.g. 6.1.0-56-amd64). Idempotent;
# concurrent callers serialize on CACHE_DIR/.lock (flock).
#
# Exit status: 0 ready; 77 the VM cannot be had here (reason on stderr);
# 2 a bad VFIOD_VM_KERNEL; anything else: a real error.
set -euo pipefail

readonly kSkip=77
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
readonly here
# Load order matters for insmod (no modprobe, no modules.dep in the guest):
# every module comes after the modules it depends on.
readonly kLtsModules=(
  virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci
  netfs fscache 9pnet 9pnet_virtio 9p
  irqbypass vfio vfio_iommu_type1 vfio_virqfd vfio-pci-core vfio-pci
  lpc_ich overlay
)
# The newer kernels build virtio in, fold fscache into netfs and vfio_virqfd
# into vfio.
readonly kNewestModules=(
  netfs 9pnet 9pnet_virtio 9p
  irqbypass vfio vfio_iommu_type1 vfio-pci-core vfio-pci
  lpc_ich overlay
)
# overlay (both kernels build it as a module): the writable root of the
# systemd boot (vm_run.sh --systemd).
# Private package lists older than this are refreshed (when the network lets).
readonly kListsMaxAgeMin=$((7 * 24 * 60))

skip() { echo "vm_image: SKIP: $*" >&2; exit "$kSkip"; }
die() { echo "vm_image: ERROR: $*" >&2; exit 1; }

# Prints the Debian kernel ABI name (e.g. 6.1.0-56-amd64) the linux-image-amd64
# meta package depends on, or nothing when apt has no package lists.
resolve_lts_abi() {
  if [[ -n ${VFIOD_VM_KERNEL_ABI:-} ]]; then
    echo "$VFIOD_VM_KERNEL_ABI"
    return
  fi
  command -v apt-cache >/dev/null || return 0
  LC_ALL=C apt-cache depends linux-image-amd64 2>/dev/null |
    sed -n 's/^ *Depends: linux-image-\([0-9][^ ]*\)$/\1/p' | head -n1
}

# Prints "URI [SIGNED_BY]" of the host's Debian archive: the first enabled
# "deb" source (one-line or deb822 format) that serves the host's release
# suite. Read only; nothing of the host's apt setup is changed.
host_debian_archive() {
  local codename f
  codename=$(. /etc/os-release 2>/dev/null && echo "${VERSION_CODENAME:-}")
  [[ -n $codename ]] || return 0
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [[ -r $f ]] || continue
    # deb [opts] URI SUITE COMPONENTS...
    awk -v want="$codename" '
      $1 == "deb" {
        i = 2; signed = ""
        if ($2 ~ /^\[/) {
          for (; i <= NF; i++) {
            if ($i ~ /^\[?signed-by=/) { signed = $i; sub(/^\[?signed-by=/, "", signed); sub(/\]$/, "", signed) }
            if ($i ~ /\]$/) { i++; break }
          }
        }
        if ($(i + 1) == want) { print $i, signed; exit }
      }' "$f"
  done | head -n1 | grep . && return 0
  for f in /etc/apt/sources.list.d/*.sources; do
    [[ -r $f ]] || continue
    # Paragraphs of "Field: value" lines; the first URI of a matching one.
    awk -v want="$codename" '
      function flush() {
        if (types ~ /(^| )deb( |$)/ && enabled != "no" && (" " suites " ") ~ (" " want " ") && uri != "")
          { print uri, signed; found = 1; exit }
        types = suites = uri = signed = enabled = ""
      }
      /^#/ { next }
      /^[ \t]*$/ { flush(); next }
      { key = tolower($1); sub(/:$/, "", key); $1 = ""; sub(/^ +/, "")
        if (key == "types") types = $0
        else if (key == "suites") suites = $0
        else if (key == "uris") { split($0, u, " "); uri = u[1] }
        else if (key == "signed-by") signed = $0
        else if (key == "enabled") enabled = tolower($0) }
      END { if (!found) flush() }' "$f"
  done | head -n1
}

# apt options of the private setup in $cache/apt-newest (set by newest_apt_init).
apt_opts=()

# Writes the private sources file (one suite of the host's Debian archive)
# and fills apt_opts. Returns 1 when the archive cannot be derived.
newest_apt_init() {
  local d=$cache/apt-newest suite=${VFIOD_VM_NEWEST_SUITE:-trixie-backports}
  local archive uri signed opts=""
  archive=${VFIOD_VM_NEWEST_ARCHIVE:-$(host_debian_archive)}
  read -r uri signed <<<"$archive"
  [[ -n ${uri:-} ]] || return 1
  [[ -n ${signed:-} ]] && opts="[signed-by=$signed] "
  mkdir -p "$d/lists/partial" "$d/cache/archives/partial"
  echo "deb ${opts}$uri $suite main" >"$d/sources.list.new"
  if ! cmp -s "$d/sources.list.new" "$d/sources.list"; then
    mv "$d/sources.list.new" "$d/sources.list"
    rm -f "$d/updated"
  else
    rm -f "$d/sources.list.new"
  fi
  # apt's _apt sandbox user must be able to write the lists.
  chmod -R a+rwX "$d"
  apt_opts=(-o "Dir::Etc::sourcelist=$d/sources.list" -o Dir::Etc::sourceparts=/dev/null
            -o "Dir::State::Lists=$d/lists" -o "Dir::Cache=$d/cache")
}

# newest_apt_ready: the private setup with package lists no older than
# kListsMaxAgeMin (refreshed when the network lets). Returns 1 when the host's
# Debian archive cannot be derived.
newest_apt_ready() {
  newest_apt_init || return 1
  local d=$cache/apt-newest
  if [[ ! -e $d/updated || -n $(find "$d/updated" -mmin +"$kListsMaxAgeMin") ]]; then
    if LC_ALL=C apt-get "${apt_opts[@]}" -q update >"$d/update.log" 2>&1; then
      touch "$d/updated"
    else
      echo "vm_image: apt-get update of ${VFIOD_VM_NEWEST_SUITE:-trixie-backports} failed (see $d/update.log)" >&2
    fi
  fi
}

# Prints the newest linux-binary-<abi> ABI of the private lists, or nothing.
resolve_newest_abi() {
  if [[ -n ${VFIOD_VM_NEWEST_ABI:-} ]]; then
    echo "$VFIOD_VM_NEWEST_ABI"
    return
  fi
  command -v apt-get >/dev/null || return 0
  newest_apt_ready || return 0
  # Plain flavour only (not -cloud-amd64, -rt-amd64).
  LC_ALL=C apt-cache "${apt_opts[@]}" pkgnames linux-binary- 2>/dev/null |
    sed -n 's/^linux-binary-\([0-9][^-]*-amd64\)$/\1/p' | sort -V | tail -n1
}

# is_cached ABI: the kernel ABI is unpacked in the cache as this flavour
# (an empty .complete is from before flavours: the 6.1 kernel).
is_cached() {
  local c=$cache/kernel/$1/.complete
  [[ -e $c ]] || return 1
  [[ $(<"$c") == "$flavour" || ( ! -s $c && $flavour == lts ) ]]
}

# has_modules ABI: the cached kernel has every module of the list (one
# unpacked before a module joined the list is fetched again when it can be).
has_modules() {
  local m
  for m in "${modules[@]}"; do
    grep -qxF -- "$m" "$cache/kernel/$1/modules/order" 2>/dev/null || return 1
  done
}

# Newest kernel of this flavour already unpacked in the cache, for an offline
# machine.
newest_cached_abi() {
  local d abi=""
  for d in $(find "$cache/kernel" -mindepth 2 -maxdepth 2 -name .complete 2>/dev/null | sort -V); do
    d=$(basename "$(dirname "$d")")
    is_cached "$d" && abi=$d
  done
  echo "$abi"
}

# apt-get download PKG... into folder $1 (through the private setup for newest).
download() {
  local dir=$1
  shift
  local opts=()
  if [[ $flavour == newest ]]; then
    newest_apt_ready || return 1
    opts=("${apt_opts[@]}")
  fi
  (cd "$dir" && apt-get "${opts[@]}" download -q "$@") >"$dir/apt.log" 2>&1 && return 0
  echo "vm_image: apt-get download $* failed:" >&2
  tail -n 5 "$dir/apt.log" >&2
  return 1
}

# Downloads the kernel package(s) of ABI and keeps vmlinuz plus the modules
# (decompressed: busybox's insmod takes plain .ko files). .complete records
# the flavour, kernel/ABI/modules/order the load order.
fetch_kernel() {
  local abi=$1 dest=$cache/kernel/$1 work m f vmlinuz
  local -a pkgs
  command -v apt-get >/dev/null || return 1
  command -v dpkg >/dev/null || return 1
  if [[ $flavour == newest ]]; then
    pkgs=("linux-binary-$abi" "linux-modules-$abi")
  else
    pkgs=("linux-image-$abi-unsigned")
  fi
  work=$(mktemp -d "$cache/fetch.XXXXXX")
  # apt's _apt sandbox user must be able to write the download folder.
  chmod 0777 "$work"
  download "$work" "${pkgs[@]}" || { rm -rf "$work"; return 1; }
  for f in "$work"/*.deb; do dpkg -x "$f" "$work/root"; done
  vmlinuz=$(find "$work/root" \( -path "*/boot/vmlinuz-$abi" -o -path "*/modules/$abi/vmlinuz" \) -print -quit)
  [[ -n $vmlinuz ]] || { rm -rf "$work"; die "no vmlinuz in ${pkgs[*]}"; }
  # Filled beside the old copy and swapped in, so a run that already chose
  # this kernel finds its files (all but for the moment of the two renames).
  local old=$dest
  dest=$cache/kernel/.new-$abi
  rm -rf "$dest"
  mkdir -p "$dest/modules"
  cp "$vmlinuz" "$dest/vmlinuz"
  for m in "${modules[@]}"; do
    f=$(find "$work/root" -path "*/modules/$abi/kernel/*" \
          \( -name "$m.ko" -o -name "$m.ko.xz" -o -name "$m.ko.zst" -o -name "$m.ko.gz" \) -print -quit)
    [[ -n $f ]] || { rm -rf "$work" "$dest"; die "module $m is not in ${pkgs[*]}"; }
    case $f in
      *.xz) xz -dc "$f" ;;
      *.zst) zstd -dcq "$f" ;;
      *.gz) gzip -dc "$f" ;;
      *) cat "$f" ;;
    esac >"$dest/modules/$m.ko"
  done
  printf '%s\n' "${modules[@]}" >"$dest/modules/order"
  rm -rf "$work"
  echo "$flavour" >"$dest/.complete"
  rm -rf "$cache/kernel/.old-$abi"
  if [[ -e $old ]]; then mv "$old" "$cache/kernel/.old-$abi"; fi
  mv "$dest" "$old"
  rm -rf "$cache/kernel/.old-$abi"
}

# Builds the initramfs for kernel ABI; the name carries a hash of everything
# that goes in, so a changed guest_init.sh gives a new image.
build_initrd() {
  local abi=$1 kdir=$cache/kernel/$1 key out stage m
  local -a order
  if [[ -s $kdir/modules/order ]]; then
    mapfile -t order <"$kdir/modules/order"
  else
    order=("${kLtsModules[@]}")
  fi
  key=$( { cat "$here/guest_init.sh" "$here/guest_systemd.sh"; printf '%s\n' "${order[@]}";
           sha256sum "$busybox" "$kdir"/modules/*.ko; } | sha256sum | cut -c1-16)
  out=$cache/initrd-$abi-$key.gz
  if [[ ! -s $out ]]; then
    stage=$(mktemp -d "$cache/initrd.XXXXXX")
    mkdir -p "$stage"/{bin,dev,proc,sys,mnt/host,mnt/share,lib/modules}
    cp "$busybox" "$stage/bin/busybox"
    cp "$here/guest_init.sh" "$stage/init"
    cp "$here/guest_systemd.sh" "$stage/lib/guest_systemd.sh"
    chmod 0755 "$stage/init" "$stage/bin/busybox"
    for m in "${order[@]}"; do cp "$kdir/modules/$m.ko" "$stage/lib/modules/"; done
    printf '%s\n' "${order[@]}" >"$stage/lib/modules/order"
    (cd "$stage" && find . -print0 | LC_ALL=C sort -z |
       cpio --null -o -H newc --quiet -R 0:0) | gzip -1 >"$out.tmp"
    mv "$out.tmp" "$out"
    rm -rf "$stage"
  fi
  # Older images of this kernel (an edited guest_init.sh) go once no starting
  # run can still be reading them.
  find "$cache" -maxdepth 1 -name "initrd-$abi-*.gz" ! -name "${out##*/}" -mmin +10 -delete
  echo "$out"
}

# Prints the ABI to use for the lts kernel, fetching it when needed.
lts_abi() {
  local abi
  abi=$(resolve_lts_abi)
  # A machine whose apt lists were cleaned knows no kernel package: as root,
  # refresh them once, unless a kernel is already cached.
  if [[ -z $abi && -z $(newest_cached_abi) && $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    echo "vm_image: no apt lists know linux-image-amd64; running apt-get update" >&2
    apt-get update -qq >/dev/null 2>&1 || true
    abi=$(resolve_lts_abi)
  fi
  echo "$abi"
}

main() {
  [[ $# -eq 1 ]] || die "usage: vm_image.sh CACHE_DIR"
  cache=$1
  flavour=${VFIOD_VM_KERNEL:-lts}
  case $flavour in
    lts) modules=("${kLtsModules[@]}") ;;
    newest) modules=("${kNewestModules[@]}") ;;
    *) echo "vm_image: VFIOD_VM_KERNEL must be lts or newest, not '$flavour'" >&2; exit 2 ;;
  esac
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
  if [[ $flavour == newest ]]; then
    abi=$(resolve_newest_abi)
  else
    abi=$(lts_abi)
  fi
  if [[ -n $abi ]] && ! { is_cached "$abi" && has_modules "$abi"; }; then
    # Offline, a copy without the newest module of the list still boots
    # (the systemd boot then has no overlay module and says so).
    fetch_kernel "$abi" || is_cached "$abi" || abi=""
  fi
  if [[ -z $abi ]] || ! is_cached "$abi"; then
    abi=$(newest_cached_abi)
    if [[ -z $abi && $flavour == newest ]]; then
      skip "no newest kernel package (linux-binary-*-amd64 of ${VFIOD_VM_NEWEST_SUITE:-trixie-backports} not found or not downloadable; see $cache/apt-newest/update.log)"
    fi
    [[ -n $abi ]] || skip "no Debian 6.1 kernel package (apt-cache depends linux-image-amd64 found nothing, or the download failed; try apt-get update)"
  fi
  local initrd
  initrd=$(build_initrd "$abi")
  echo "$cache/kernel/$abi/vmlinuz"
  echo "$initrd"
  echo "$abi"
}

main "$@"
