#!/usr/bin/env bash
# scripts/package.sh BUILD_DIR OUT_DIR
#
# Builds the Debian packages from an already built CMake tree, compiling
# nothing (packaging/README.md says why this way and what goes where):
#   OUT_DIR/vfiod_<version>_<arch>.deb       daemon, vfioctl, units, sysusers, config
#   OUT_DIR/python3-vfiod_<version>_all.deb  the Python client
# and prints their paths, one per line (nothing else goes to stdout). Exits
# non-zero on failure. <version> is the top entry of packaging/debian/changelog,
# whose upstream part must equal project(VERSION) in CMakeLists.txt.
# Needs dpkg-dev (dpkg-shlibdeps, dpkg-gencontrol), binutils and cmake; not root.
set -euo pipefail

die() {
  echo "package.sh: $*" >&2
  exit 1
}
(($# == 2)) || die "usage: scripts/package.sh BUILD_DIR OUT_DIR"
src=$(cd "$(dirname "$0")/.." && pwd -P)
build=$(cd "$1" 2>/dev/null && pwd -P) || die "no build directory $1"
mkdir -p "$2"
out=$(cd "$2" && pwd -P)
debian=$src/packaging/debian
umask 022
export LC_ALL=C.UTF-8

# The build tree must be this source tree's, and a plain one: a sanitizer
# build would make the package depend on libasan.
cache=$build/CMakeCache.txt
[[ -f $cache ]] || die "$build is not a CMake build directory"
home=$(sed -n 's/^CMAKE_HOME_DIRECTORY:INTERNAL=//p' "$cache")
[[ $(cd "$home" && pwd -P) == "$src" ]] || die "$build was configured from $home, not $src"
grep -q '^VFIOD_SANITIZE:BOOL=ON' "$cache" && die "$build is a sanitizer build"
for bin in daemon/vfiod client/vfioctl/vfioctl; do
  [[ -x $build/$bin ]] || die "$build/$bin is not built (cmake --build $build)"
done

version=$(dpkg-parsechangelog -l"$debian/changelog" -SVersion)
upstream=$(sed -n 's/^project(vfiod VERSION \([0-9.]*\).*/\1/p' "$src/CMakeLists.txt")
[[ ${version%-*} == "$upstream" ]] ||
  die "packaging/debian/changelog is at $version, CMakeLists.txt at $upstream: add a changelog entry"
# Reproducible: file times are the changelog's date (control(), gzip -n).
SOURCE_DATE_EPOCH=$(dpkg-parsechangelog -l"$debian/changelog" -STimestamp)
export SOURCE_DATE_EPOCH

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# dpkg-shlibdeps and dpkg-gencontrol read debian/control and debian/changelog
# and expect each package staged in debian/PACKAGE, as in a source package.
mkdir "$work/debian"
cp "$debian/control" "$debian/changelog" "$work/debian/"
log=$work/log

# run CMD...: runs a tool with its output in the log, shown if it fails.
run() {
  "$@" >>"$log" 2>&1 || {
    cat "$log" >&2
    die "failed: $*"
  }
}

# docs PKG: the copyright file and changelog.Debian.gz every package has,
# and its lintian overrides (debian/PKG.lintian-overrides) if it has some.
docs() {
  local root=$work/debian/$1 doc=$work/debian/$1/usr/share/doc/$1
  install -d "$doc"
  install -m644 "$debian/copyright" "$doc/copyright"
  gzip -9nc "$debian/changelog" >"$doc/changelog.Debian.gz"
  if [[ -f $debian/$1.lintian-overrides ]]; then
    install -d "$root/usr/share/lintian/overrides"
    install -m644 "$debian/$1.lintian-overrides" "$root/usr/share/lintian/overrides/$1"
  fi
}

# compress PKG: what dh_compress would: manual pages, and documentation
# files over 4 KiB (not copyright, not examples).
compress() {
  local root=$work/debian/$1
  find "$root/usr/share/man" -type f ! -name '*.gz' -exec gzip -9n {} + 2>/dev/null || true
  find "$root/usr/share/doc" -type f -size +4k ! -name copyright ! -name '*.gz' \
    ! -path '*/examples/*' -exec gzip -9n {} +
}

# control PKG ARCH: DEBIAN/ with maintainer scripts, conffiles (every file in
# /etc, as dh_installdeb marks them), md5sums (conffiles excepted, as
# dh_md5sums), and control from debian/control (Installed-Size computed).
control() {
  local pkg=$1 root=$work/debian/$1 script
  install -d -m755 "$root/DEBIAN"
  for script in postinst prerm postrm; do
    if [[ -f $debian/$pkg.$script ]]; then
      install -m755 "$debian/$pkg.$script" "$root/DEBIAN/$script"
    fi
  done
  if [[ -d $root/etc ]]; then
    (cd "$root" && find etc -type f | sort | sed 's,^,/,') >"$root/DEBIAN/conffiles"
  fi
  (cd "$root" && find . -path ./DEBIAN -prune -o -path ./etc -prune -o -type f -print |
    sed 's,^\./,,' | LC_ALL=C sort | xargs -r md5sum) >"$root/DEBIAN/md5sums"
  # Every file at the changelog's date: the same tree gives the same .deb.
  find "$root" -exec touch --no-dereference --date="@$SOURCE_DATE_EPOCH" {} +
  touch "$work/debian/$pkg.substvars"
  (cd "$work" && run dpkg-gencontrol -p"$pkg" -T"debian/$pkg.substvars" -P"$root" -fdebian/files)
  run dpkg-deb --root-owner-group -Zxz --build "$root" "$out/${pkg}_${version}_$2.deb"
  echo "$out/${pkg}_${version}_$2.deb"
}

# --- vfiod: the install component `vfiod`, prefix /usr.
root=$work/debian/vfiod
DESTDIR=$root run cmake --install "$build" --prefix /usr --component vfiod
# What the units and the daemon name must be where they point.
for f in usr/sbin/vfiod usr/bin/vfioctl etc/vfiod/vfiod.json lib/systemd/system/vfiod.service \
  lib/systemd/system/vfiod.socket usr/lib/sysusers.d/vfiod.conf; do
  [[ -f $root/$f ]] || die "the install tree has no /$f"
done
grep -qx 'ExecStart=/usr/sbin/vfiod --config /etc/vfiod/vfiod.json' \
  "$root/lib/systemd/system/vfiod.service" || die "vfiod.service's ExecStart is not /usr/sbin/vfiod"
# Stripped as dh_strip does (the build id stays; the unstripped binaries
# with their debug info are the build tree's).
strip --remove-section=.comment --remove-section=.note "$root/usr/sbin/vfiod" "$root/usr/bin/vfioctl"
docs vfiod
doc=$root/usr/share/doc/vfiod
install -m644 "$src/README.md" "$doc/README.md"
install -m644 "$src/config/README.md" "$doc/README.config.md"
install -m644 "$src/systemd/README.md" "$doc/README.systemd.md"
install -d "$doc/examples"
install -m644 "$src/systemd/contiguity-sysadmin.conf" "$src/systemd/metrics-textfile.conf" \
  "$doc/examples/"
compress vfiod
# (DEBIAN/ marks the package's root for dpkg-shlibdeps.)
install -d -m755 "$root/DEBIAN"
(cd "$work" && run dpkg-shlibdeps -Tdebian/vfiod.substvars \
  -edebian/vfiod/usr/sbin/vfiod -edebian/vfiod/usr/bin/vfioctl)
control vfiod "$(dpkg-architecture -qDEB_HOST_ARCH 2>/dev/null)"

# --- python3-vfiod: the install component `python` (pure Python, arch all).
root=$work/debian/python3-vfiod
DESTDIR=$root run cmake --install "$build" --prefix /usr --component python
[[ -f $root/usr/lib/python3/dist-packages/vfiod/__init__.py ]] ||
  die "the install tree has no /usr/lib/python3/dist-packages/vfiod"
docs python3-vfiod
install -m644 "$src/client/python/README.md" "$root/usr/share/doc/python3-vfiod/README.md"
compress python3-vfiod
control python3-vfiod all

# The Debian tools' warnings, if any, for whoever runs this.
grep -i 'warning' "$log" >&2 || true
