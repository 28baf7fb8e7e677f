# vfiod_vm_test(): registers a command to run inside the QEMU test guest.
# Included by tests/CMakeLists.txt before the test folders, so any folder may
# call it, and by tests/vm/CMakeLists.txt (include_guard makes that harmless).
#
# Every VM test takes both of ctest's processor slots on a 2-core machine
# (PROCESSORS 2: the guest runs two TCG vCPU threads) and the vfiod_vm lock,
# so VM tests run one at a time and never oversubscribe the CPUs. A run is
# 10-40 s; the harness's own timeout (240 s by default) fires before ctest's
# (60 s later), so a hung guest is reported with its log rather than killed.
include_guard(GLOBAL)

set(VFIOD_VM_RUN ${CMAKE_CURRENT_LIST_DIR}/vm_run.sh)
set(VFIOD_VM_CACHE_DIR ${CMAKE_BINARY_DIR}/vm-cache CACHE PATH
    "Where vm_run.sh keeps the guest kernel and initramfs")

# vfiod_vm_test(NAME [AS_USER uid] [TIMEOUT seconds] COMMAND cmd args...)
# Runs cmd in the guest through vm_run.sh as a ctest test labelled "vm"
# (exit 77 = no VM on this machine = skipped).
function(vfiod_vm_test name)
  cmake_parse_arguments(V "" "AS_USER;TIMEOUT" "COMMAND" ${ARGN})
  if(NOT V_COMMAND)
    message(FATAL_ERROR "vfiod_vm_test(${name}): COMMAND is required")
  endif()
  if(NOT V_TIMEOUT)
    set(V_TIMEOUT 240)
  endif()
  set(opts --timeout ${V_TIMEOUT})
  if(DEFINED V_AS_USER)
    list(APPEND opts --as-user ${V_AS_USER})
  endif()
  add_test(NAME ${name} COMMAND ${VFIOD_VM_RUN} ${opts} -- ${V_COMMAND})
  math(EXPR ctest_timeout "${V_TIMEOUT} + 60")
  vfiod_vm_test_properties(${name} ${ctest_timeout})
endfunction()

# vfiod_vm_test_properties(NAME TIMEOUT): the properties every test that
# boots the guest shares, for tests that call vm_run.sh in their own way.
function(vfiod_vm_test_properties name timeout)
  set_tests_properties(${name} PROPERTIES
    LABELS vm
    SKIP_RETURN_CODE 77
    TIMEOUT ${timeout}
    PROCESSORS 2
    RESOURCE_LOCK vfiod_vm
    ENVIRONMENT "VFIOD_VM_CACHE=${VFIOD_VM_CACHE_DIR}")
endfunction()
