# vfiod_vm_test(): registers a command to run inside the QEMU test guest, once
# per guest kernel. Included by tests/CMakeLists.txt before the test folders,
# so any folder may call it, and by tests/vm/CMakeLists.txt (include_guard
# makes that harmless).
#
# Every VM test takes both of ctest's processor slots on a 2-core machine
# (PROCESSORS 2: the guest runs two TCG vCPU threads) and the vfiod_vm lock,
# so VM tests run one at a time and never oversubscribe the CPUs. A run is
# 10-40 s; the harness's own timeout (240 s by default) fires before ctest's
# (60 s later), so a hung guest is reported with its log rather than killed.
#
# Kernels (VFIOD_VM_KERNEL of vm_run.sh): "lts" is Debian 12's 6.1, "newest"
# the newest kernel of trixie-backports. A test NAME runs on lts with the
# labels vm and vm-lts; its twin NAME_newest on newest with vm and vm-newest.
# So `ctest -L vm` runs both, `-L vm-lts` / `-L vm-newest` one kernel, and
# `-LE vm` no VM test at all.
include_guard(GLOBAL)

set(VFIOD_VM_RUN ${CMAKE_CURRENT_LIST_DIR}/vm_run.sh)
set(VFIOD_VM_CACHE_DIR ${CMAKE_BINARY_DIR}/vm-cache CACHE PATH
    "Where vm_run.sh keeps the guest kernels and initramfs")
set(VFIOD_VM_KERNELS lts newest CACHE STRING
    "Guest kernels every VM test runs on (lts, newest)")

# vfiod_vm_test(NAME [AS_USER uid] [TIMEOUT seconds] [HOST] [SYSTEMD] [KERNELS k...]
#               [ENV NAME=VALUE...] COMMAND cmd args...)
# Runs cmd in the guest through vm_run.sh as a ctest test per kernel of
# KERNELS (default VFIOD_VM_KERNELS); exit 77 = no VM on this machine =
# skipped. HOST: cmd runs on the host and boots the guest itself through
# vm_run.sh (it sees VFIOD_VM_KERNEL in its environment); AS_USER is then
# meaningless. SYSTEMD: the guest boots the host's systemd as PID 1 and cmd
# runs as root from a unit (vm_run.sh --systemd; not with AS_USER). KERNELS narrows a test to some kernels (a long benchmark-like
# run on one kernel only). ENV: more environment for vm_run.sh (on the host,
# e.g. VFIOD_VM_NUMA=1 for the two-node guest).
function(vfiod_vm_test name)
  cmake_parse_arguments(V "HOST;SYSTEMD" "AS_USER;TIMEOUT" "COMMAND;KERNELS;ENV" ${ARGN})
  if(NOT V_COMMAND)
    message(FATAL_ERROR "vfiod_vm_test(${name}): COMMAND is required")
  endif()
  if(NOT V_TIMEOUT)
    set(V_TIMEOUT 240)
  endif()
  if(NOT V_KERNELS)
    set(V_KERNELS ${VFIOD_VM_KERNELS})
  endif()
  set(opts --timeout ${V_TIMEOUT})
  if(DEFINED V_AS_USER)
    list(APPEND opts --as-user ${V_AS_USER})
  endif()
  if(V_SYSTEMD)
    list(APPEND opts --systemd)
  endif()
  if(V_HOST)
    set(command ${V_COMMAND})
  else()
    set(command ${VFIOD_VM_RUN} ${opts} -- ${V_COMMAND})
  endif()
  math(EXPR ctest_timeout "${V_TIMEOUT} + 60")
  foreach(kernel IN LISTS V_KERNELS)
    if(NOT kernel IN_LIST VFIOD_VM_KERNELS)
      continue()
    endif()
    set(test ${name})
    if(NOT kernel STREQUAL "lts")
      set(test ${name}_${kernel})
    endif()
    add_test(NAME ${test} COMMAND ${command})
    vfiod_vm_test_properties(${test} ${ctest_timeout} KERNEL ${kernel} ENV ${V_ENV})
  endforeach()
endfunction()

# vfiod_vm_test_properties(NAME TIMEOUT [KERNEL lts|newest] [ENV NAME=VALUE...]): the properties
# every test that boots the guest shares (labels, kernel, lock), for a test
# that calls vm_run.sh in its own way. KERNEL defaults to lts; register a
# twin with KERNEL newest yourself (or use vfiod_vm_test(... HOST ...)).
function(vfiod_vm_test_properties name timeout)
  cmake_parse_arguments(P "" "KERNEL" "ENV" ${ARGN})
  if(NOT P_KERNEL)
    set(P_KERNEL lts)
  endif()
  if(NOT P_KERNEL MATCHES "^(lts|newest)$")
    message(FATAL_ERROR "vfiod_vm_test_properties(${name}): KERNEL is lts or newest")
  endif()
  set(env "")
  foreach(e IN LISTS P_ENV)
    string(APPEND env ";${e}")
  endforeach()
  set_tests_properties(${name} PROPERTIES
    LABELS "vm;vm-${P_KERNEL}"
    SKIP_RETURN_CODE 77
    TIMEOUT ${timeout}
    PROCESSORS 2
    RESOURCE_LOCK vfiod_vm
    ENVIRONMENT "VFIOD_VM_CACHE=${VFIOD_VM_CACHE_DIR};VFIOD_VM_KERNEL=${P_KERNEL}${env}")
endfunction()
