// `vfioctl bench`: measure a running vfiod from the client side.
//   vfioctl bench ping [--count N]                 round-trip latency (p50/p99)
//   vfioctl bench rate [--clients N]... [--seconds S]   requests/s, N connections
//   vfioctl bench map --device BDF [--size S] [--memory 4k|thp|hugetlb-2m|hugetlb-1g] [--loops N]
//                     [--adopt-each]               dma.map_fd / dma.free of a memfd registered
//                                                  once (or passed with every map)
// The full benchmark suite (raw ioctls, the VM, micro-benchmarks) is
// scripts/bench.sh; these commands share its client-side code (bench_load.h).
#pragma once

#include <CLI/CLI.hpp>

#include "vfioctl/commands.h"

namespace vfiod::vfioctl {

/// Adds the `bench` noun and its verbs to `app`.
void AddBenchCommands(CLI::App& app, Dispatch& dispatch);

}  // namespace vfiod::vfioctl
