// What vfiod exports to Prometheus: the figures of `status` and `stats`,
// with the per-user and per-container figures behind them, rendered in the
// text exposition format (exposition.h). The one renderer: the `metrics`
// method serves its text, `vfioctl stats --prometheus` prints it, and the
// textfile writer (metrics_textfile.h) writes it.
//
// Metric names (all prefixed vfiod_, base units, counters end in _total):
// info, uptime_seconds, iommu_extension{extension}, clients,
// detached_sessions, fd_store, containers, mappings, locked_bytes,
// region_locked_bytes, max_locked_bytes (when capped), dma_entries,
// user_locked_bytes{uid}, user_region_locked_bytes{uid}, user_mappings{uid},
// user_containers{uid}, container_mappings / container_mapped_bytes /
// container_dma_entries / container_dma_entries_available
// {container,name,owner_uid}, lingering_containers, lingering_groups,
// requests_total{method}, request_errors_total{method,code},
// request_seconds_total{method}, request_max_seconds{method},
// request_stage_seconds_total{method,stage} (stages.h; non-zero stages only),
// map_duration_seconds and unmap_duration_seconds (histograms),
// map_bytes_total, map_ioctls_total, unmap_bytes_total, unmap_ioctls_total.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "service/stats.h"
#include "service/views.h"

namespace vfiod::service {

/// What one user holds, as the quotas count it.
struct UserUsageView {
  uint64_t locked_bytes = 0;         ///< mappings' charges and hugetlb regions
  uint64_t region_locked_bytes = 0;  ///< the part held by registered hugetlb regions
  uint64_t mappings = 0;             ///< live mappings it owns
  uint64_t containers = 0;           ///< live containers it owns
};

/// One consistent view of the daemon's figures (Service::MetricsOf): the
/// status and stats counters, and the users and containers behind them.
/// For a non-root caller: its own uid's figures only.
struct MetricsView {
  StatusView status;
  StatsSnapshot stats;
  std::vector<ContainerView> containers;  ///< live containers, by id
  std::map<uid_t, UserUsageView> users;   ///< every uid holding something
};

/// The exposition text of `view` (Prometheus text format 0.0.4).
[[nodiscard]] std::string RenderMetrics(const MetricsView& view);

}  // namespace vfiod::service
