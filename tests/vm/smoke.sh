#!/usr/bin/env bash
# smoke.sh [EXPECTED_UID]: the harness's self-test, run INSIDE the guest by
# vm_run.sh. Checks the promises vm_run.sh makes to the commands it runs;
# prints one line per check and exits 1 when any check fails.
set -u
expected_uid=${1:-0}
failures=0

check() {  # check DESCRIPTION COMMAND...
  local what=$1
  shift
  if "$@"; then
    echo "ok - $what"
  else
    echo "not ok - $what"
    failures=$((failures + 1))
  fi
}

driver_of() { basename "$(readlink "/sys/bus/pci/devices/$1/driver")" 2>/dev/null; }
group_of() { basename "$(readlink "/sys/bus/pci/devices/$1/iommu_group")" 2>/dev/null; }
bound_to_vfio() { [[ $(driver_of "$1") == vfio-pci ]]; }
group_node_usable() {
  local n
  n=/dev/vfio/$(group_of "$1")
  [[ -c $n && -r $n && -w $n ]]
}
group_size() { find "/sys/kernel/iommu_groups/$(group_of "$1")/devices" -mindepth 1 -maxdepth 1 | wc -l; }

# A group is not viable when one of its devices keeps a non-VFIO driver.
group_has_kernel_driver() {
  local d drv
  for d in "/sys/kernel/iommu_groups/$(group_of "$1")/devices"/*; do
    drv=$(driver_of "$(basename "$d")")
    [[ -n $drv && $drv != vfio-pci ]] && return 0
  done
  return 1
}

bar_size() {  # bar_size BDF BAR: size in bytes from sysfs "resource"
  local start end
  read -r start end _ < <(sed -n "$(($2 + 1))p" "/sys/bus/pci/devices/$1/resource")
  echo $((end - start + 1))
}

hugepages() { cat "/sys/kernel/mm/hugepages/hugepages-$1/nr_hugepages"; }
is_hugetlbfs() { [[ $(stat -f -c %T "$1") == hugetlbfs ]]; }

# Opens (and closes) a VFIO group node the way a user of VFIO would.
open_group() {
  local n
  n=/dev/vfio/$(group_of "$1")
  { exec 3<>"$n"; } 2>/dev/null && exec 3>&-
}

check "VFIOD_IN_VM=1" [ "${VFIOD_IN_VM:-}" = 1 ]
for v in VFIOD_EDU_BDF VFIOD_IVSHMEM_BDF VFIOD_NVME_BDF VFIOD_NONVIABLE_BDF; do
  check "$v is a PCI device (${!v:-unset})" test -d "/sys/bus/pci/devices/${!v:-none}"
done
check "edu is 1234:11e8" [ "$(cat "/sys/bus/pci/devices/${VFIOD_EDU_BDF:-none}/device")" = 0x11e8 ]
check "/dev/vfio/vfio is a char device" test -c /dev/vfio/vfio
check "an Intel IOMMU translates" test -e /sys/class/iommu/dmar0
for v in VFIOD_EDU_BDF VFIOD_IVSHMEM_BDF VFIOD_NVME_BDF VFIOD_NONVIABLE_BDF; do
  check "$v bound to vfio-pci" bound_to_vfio "${!v}"
  check "$v group node is read-writable by uid $(id -u)" group_node_usable "${!v}"
done
check "edu has an IOMMU group of its own" [ "$(group_size "$VFIOD_EDU_BDF")" = 1 ]
check "edu group opens" open_group "$VFIOD_EDU_BDF"
check "nonviable group has another function on a kernel driver" \
  group_has_kernel_driver "$VFIOD_NONVIABLE_BDF"
check "ivshmem BAR2 is 64 MiB" [ "$(bar_size "$VFIOD_IVSHMEM_BDF" 2)" = $((64 << 20)) ]
check "64 x 2M hugepages reserved" [ "$(hugepages 2048kB)" -ge 64 ]
check "1 x 1G hugepage reserved" [ "$(hugepages 1048576kB)" -ge 1 ]
check "hugetlbfs at /dev/hugepages" is_hugetlbfs /dev/hugepages
check "hugetlbfs at /dev/hugepages1G" is_hugetlbfs /dev/hugepages1G
check "runs as uid $expected_uid" [ "$(id -u)" = "$expected_uid" ]
check "locked memory is unlimited" [ "$(ulimit -l)" = unlimited ]
check "/tmp is writable" sh -c 'echo x >/tmp/vm-smoke && rm /tmp/vm-smoke'
check "the host's / is read-only" sh -c '! touch /vm-smoke-ro 2>/dev/null'
echo "smoke: $failures failure(s)"
[[ $failures -eq 0 ]]
