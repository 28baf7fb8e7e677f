#!/usr/bin/env bash
# check_deb.sh SOURCE_DIR BUILD_DIR WORK_DIR
# The test package_deb (packaging/README.md): builds the packages from
# BUILD_DIR with scripts/package.sh into WORK_DIR/out, then checks
#  1. lintian: no error or warning that is not overridden (each override in
#     packaging/debian/*.lintian-overrides says why);
#  2. the contents: binaries where the units and the code expect them,
#     stripped; units, sysusers file, drop-ins only as examples; the config a
#     conffile; the Python module in Debian's place without bytecode;
#  3. the maintainer scripts, for real: dpkg installs both packages into an
#     empty root (WORK_DIR/root) with the scripts run outside a chroot
#     (DPKG_ROOT, as dpkg's --force-script-chrootless does), installs them
#     again (an upgrade), removes and purges vfiod, checking each time the
#     users, the socket's enable link, the conffile and what purge leaves.
# Exits non-zero, saying what, on the first failure.
set -euo pipefail

(($# == 3)) || {
  echo "usage: check_deb.sh SOURCE_DIR BUILD_DIR WORK_DIR" >&2
  exit 2
}
src=$1 build=$2 work=$3
fail() {
  echo "FAIL: $*" >&2
  exit 1
}
pass() { echo "ok: $*"; }

command -v lintian >/dev/null || fail "lintian is not installed (scripts/deps.sh installs it)"
rm -rf "$work"
mkdir -p "$work"
out=$work/out

# --- build
mapfile -t debs < <("$src/scripts/package.sh" "$build" "$out") || true
version=$(dpkg-parsechangelog -l"$src/packaging/debian/changelog" -SVersion)
arch=$(dpkg-architecture -qDEB_HOST_ARCH)
main=$out/vfiod_${version}_$arch.deb
py=$out/python3-vfiod_${version}_all.deb
[[ ${debs[*]-} == "$main $py" ]] || fail "package.sh printed '${debs[*]-}', not '$main $py'"
[[ -f $main && -f $py ]] || fail "package.sh did not write $main and $py"
pass "package.sh built ${debs[*]}"

# --- 1. lintian (as root here, hence --allow-root). Info tags and overrides
# are shown, and the verdict is read from the tags: lintian 2.116 exits
# non-zero for shown overrides too (--show-overrides with --fail-on).
lintian_out=$work/lintian.out
lintian --allow-root --display-info --show-overrides "${debs[@]}" >"$lintian_out" 2>&1 || true
cat "$lintian_out"
if grep -E '^[EW]: ' "$lintian_out" >/dev/null; then
  fail "lintian reports errors or warnings (above)"
fi
# Each package's overrides were found, so lintian did read the packages.
for pkg in vfiod python3-vfiod; do
  grep -q "^O: $pkg: initial-upload-closes-no-bugs" "$lintian_out" ||
    fail "lintian did not check $pkg (no override shown for it; output above)"
done
pass "lintian: no error or warning"
# The build's hardening flags (CMakeLists.txt, VFIOD_HARDEN) reach the
# packaged binaries: lintian's hardening tags would name any that lacks them.
if grep -E ': hardening-no-(fortify-functions|bindnow|relro)' "$lintian_out" >/dev/null; then
  fail "lintian finds binaries without the hardening flags (above)"
fi
pass "lintian: every binary fortified, full RELRO and bindnow"

# --- 2. contents
contents=$work/contents
dpkg-deb -c "$main" >"$contents"
has() { grep -qE " \./$1\$" "$contents" || fail "vfiod's package has no /$1"; }
for f in usr/sbin/vfiod usr/bin/vfioctl etc/vfiod/vfiod.json \
  lib/systemd/system/vfiod.service lib/systemd/system/vfiod.socket \
  usr/lib/sysusers.d/vfiod.conf usr/share/man/man8/vfiod.8.gz usr/share/man/man1/vfioctl.1.gz \
  usr/share/doc/vfiod/copyright usr/share/doc/vfiod/changelog.Debian.gz \
  usr/share/doc/vfiod/examples/contiguity-sysadmin.conf \
  usr/share/doc/vfiod/examples/metrics-textfile.conf; do
  has "$f"
done
if grep -E '\.(service|socket)\.d/|/__pycache__/|\.pyc$' "$contents"; then
  fail "an active drop-in or bytecode is in the package (above)"
fi
if awk '$2 != "root/root"' "$contents" | grep .; then
  fail "files not owned by root/root (above)"
fi
conffiles=$(dpkg-deb -I "$main" conffiles)
[[ $conffiles == /etc/vfiod/vfiod.json ]] || fail "conffiles is '$conffiles', not /etc/vfiod/vfiod.json"
depends=$(dpkg-deb -f "$main" Depends)
for lib in libc6 libsystemd0 libstdc++6; do
  [[ ", $depends," == *", $lib ("* || ", $depends," == *", $lib,"* ]] ||
    fail "Depends ($depends) lacks $lib"
done
pass "vfiod's files, conffiles and Depends ($depends)"

dpkg-deb -c "$py" >"$contents"
grep -qE ' \./usr/lib/python3/dist-packages/vfiod/__init__\.py$' "$contents" ||
  fail "python3-vfiod has no /usr/lib/python3/dist-packages/vfiod/__init__.py"
if grep -E '/__pycache__/|\.pyc$' "$contents"; then fail "bytecode in python3-vfiod (above)"; fi
pass "python3-vfiod's files"

ctrl=$work/control
for deb in "${debs[@]}"; do
  rm -rf "$ctrl"
  dpkg-deb -e "$deb" "$ctrl"
  for s in "$ctrl"/*inst "$ctrl"/*rm; do
    [[ -x $s ]] || fail "$(basename "$deb"): $(basename "$s") is not executable"
    sh -n "$s" || fail "$(basename "$deb"): $(basename "$s") does not parse"
  done
done
[[ -x $ctrl/postinst && -x $ctrl/prerm ]] || fail "python3-vfiod has no postinst or prerm"
rm -rf "$ctrl"
dpkg-deb -e "$main" "$ctrl"
for s in postinst prerm postrm; do [[ -x $ctrl/$s ]] || fail "vfiod has no $s"; done
pass "maintainer scripts present and sh -n clean"

# The binaries as packaged: stripped, and compiled with the paths the
# package installs (the default config is where the unit says).
x=$work/x
dpkg-deb -x "$main" "$x"
for bin in usr/sbin/vfiod usr/bin/vfioctl; do
  if readelf -S "$x/$bin" | grep -q '\.debug_info'; then fail "/$bin is not stripped"; fi
done
"$x/usr/sbin/vfiod" --help | grep -q '/etc/vfiod/vfiod.json' ||
  fail "vfiod --help does not name /etc/vfiod/vfiod.json as its default config"
grep -qx 'ExecStart=/usr/sbin/vfiod --config /etc/vfiod/vfiod.json' "$x/lib/systemd/system/vfiod.service" ||
  fail "vfiod.service does not start /usr/sbin/vfiod with /etc/vfiod/vfiod.json"
grep -q '/run/vfiod/vfiod.sock' "$x/usr/bin/vfioctl" ||
  fail "vfioctl's default socket is not /run/vfiod/vfiod.sock"
grep -qx 'ListenStream=/run/vfiod/vfiod.sock' "$x/lib/systemd/system/vfiod.socket" ||
  fail "vfiod.socket does not listen on /run/vfiod/vfiod.sock"
pass "binaries stripped; paths agree (config, unit, socket)"

# --- 3. maintainer scripts under dpkg, in an empty root
root=$work/root
mkdir -p "$root/var/lib/dpkg/updates" "$root/var/lib/dpkg/info" "$root/etc"
touch "$root/var/lib/dpkg/status"
dpkg_root() {
  # --force-depends: the root has no libc6 etc.; not-root: run as any user.
  dpkg --root="$root" --force-script-chrootless --force-depends --force-not-root \
    --log=/dev/null "$@" >>"$work/dpkg.log" 2>&1 || {
    cat "$work/dpkg.log" >&2
    fail "dpkg $*"
  }
}
link=$root/etc/systemd/system/sockets.target.wants/vfiod.socket
installed_ok() {
  grep -q '^vfiod:' "$root/etc/passwd" || fail "$1: no user vfiod"
  grep -q '^vfio-users:' "$root/etc/group" || fail "$1: no group vfio-users"
  [[ $(grep -c '^vfiod:' "$root/etc/passwd") == 1 ]] || fail "$1: user vfiod created twice"
  [[ -L $link ]] || fail "$1: vfiod.socket is not enabled (no $link)"
  [[ -f $root/etc/vfiod/vfiod.json ]] || fail "$1: no /etc/vfiod/vfiod.json"
}
dpkg_root -i "$main" "$py"
installed_ok "install"
pass "install: users created, vfiod.socket enabled, config in place"
echo '// an administrator edit' >>"$root/etc/vfiod/vfiod.json"
dpkg_root -i "$main" "$py"
installed_ok "reinstall (upgrade path)"
grep -q 'an administrator edit' "$root/etc/vfiod/vfiod.json" || fail "reinstall replaced the edited conffile"
pass "reinstall: idempotent, edited conffile kept"
rm "$link"
dpkg_root -i "$main"
[[ ! -L $link ]] || fail "an upgrade enabled vfiod.socket again after the administrator disabled it"
ln -s /lib/systemd/system/vfiod.socket "$link"
pass "upgrade keeps vfiod.socket disabled when the administrator disabled it"
dpkg_root -r vfiod
[[ ! -e $root/usr/sbin/vfiod ]] || fail "remove left /usr/sbin/vfiod"
[[ -f $root/etc/vfiod/vfiod.json ]] || fail "remove took the conffile (only purge may)"
dpkg_root -P vfiod python3-vfiod
[[ ! -e $root/etc/vfiod ]] || fail "purge left /etc/vfiod"
[[ ! -L $link ]] || fail "purge left $link"
[[ ! -e $root/etc/systemd/system/vfiod.socket ]] || fail "purge left a mask of vfiod.socket"
[[ ! -e $root/usr/lib/python3/dist-packages/vfiod ]] || fail "purge left the Python module"
grep -q '^vfio-users:' "$root/etc/group" || fail "purge removed the group vfio-users (Debian keeps it)"
if find "$root/var/lib/systemd/deb-systemd-helper-enabled" -name '*vfiod*' 2>/dev/null | grep .; then
  fail "purge left deb-systemd-helper's record (above)"
fi
pass "remove keeps the conffile; purge removes it, the links and the record, keeps the users"
echo "package_deb: all checks passed"
