#include "service/metrics.h"

#include <span>

#include "service/config.h"
#include "service/exposition.h"

namespace vfiod::service {

namespace {

using enum MetricType;

void Gauge(Exposition& out, const char* name, const char* help, uint64_t value) {
  out.Family(name, kGauge, help);
  out.Sample({}, value);
}

void Counter(Exposition& out, const char* name, const char* help, uint64_t value) {
  out.Family(name, kCounter, help);
  out.Sample({}, value);
}

void RenderDaemon(Exposition& out, const StatusView& s) {
  out.Family("vfiod_info", kGauge, "vfiod's version, API version and kernel seam (always 1)");
  out.Sample({{"version", s.version},
              {"api_version", std::to_string(s.api_version)},
              {"kernel", s.kernel}},
             uint64_t{1});
  Gauge(out, "vfiod_uptime_seconds", "Seconds since vfiod started", s.uptime_s);
  out.Family("vfiod_iommu_extension", kGauge,
             "IOMMU extensions the kernel offers (1) or not (0), probed at start");
  const std::pair<const char*, bool> extensions[] = {{"type1v2", s.extensions.type1v2},
                                                     {"unmap_all", s.extensions.unmap_all},
                                                     {"update_vaddr", s.extensions.update_vaddr},
                                                     {"mmio_no_pin", s.extensions.mmio_no_pin}};
  for (const auto& [name, on] : extensions) {
    out.Sample({{"extension", name}}, uint64_t{on ? 1U : 0U});
  }
  Gauge(out, "vfiod_clients", "Sessions of connected clients", s.clients);
  Gauge(out, "vfiod_detached_sessions",
        "Sessions a restart kept, waiting for their client's session.resume", s.detached_sessions);
  Gauge(out, "vfiod_fd_store",
        "1 when what vfiod holds survives a restart (the service manager's fd store)",
        s.fd_store ? 1 : 0);
  if (s.fd_store) {
    Gauge(out, "vfiod_stored_fds_charged",
          "Fds of the service manager's fd store charged to live objects (the most they keep)",
          s.stored_fds_charged);
    Gauge(out, "vfiod_max_stored_fds", "The fd store's budget limits.max_stored_fds, as fitted",
          s.max_stored_fds);
    Gauge(out, "vfiod_max_stored_fds_per_user",
          "One non-root user's share of the fd store's budget, limits.max_stored_fds_per_user",
          s.max_stored_fds_per_user);
  }
}

void RenderHoldings(Exposition& out, const StatusView& s) {
  Gauge(out, "vfiod_containers", "Live VFIO containers", s.containers);
  Gauge(out, "vfiod_mappings", "Live DMA mappings", s.mappings);
  Gauge(out, "vfiod_locked_bytes",
        "Bytes charged as locked for all users: mappings and registered hugetlb regions",
        s.locked_bytes);
  Gauge(out, "vfiod_region_locked_bytes",
        "The part of vfiod_locked_bytes held by registered hugetlb regions", s.region_locked_bytes);
  if (s.max_locked_bytes != kUnlimited) {
    Gauge(out, "vfiod_max_locked_bytes", "The daemon-wide cap limits.max_locked_bytes",
          s.max_locked_bytes);
  }
  Gauge(out, "vfiod_dma_entries", "VFIO DMA mapping entries in use, all containers", s.dma_entries);
  uint64_t groups = 0;
  for (const LingeringView& l : s.lingering) {
    groups += l.groups.size();
  }
  Gauge(out, "vfiod_lingering_containers",
        "Destroyed containers whose groups a handed-out device fd still holds", s.lingering.size());
  Gauge(out, "vfiod_lingering_groups", "IOMMU groups held by the lingering containers", groups);
}

void RenderUsers(Exposition& out, const std::map<uid_t, UserUsageView>& users) {
  struct Column {
    const char* name;
    const char* help;
    uint64_t UserUsageView::*field;
  };
  static constexpr Column kColumns[] = {
      {"vfiod_user_locked_bytes", "Bytes charged as locked to the user (its quota's locked_bytes)",
       &UserUsageView::locked_bytes},
      {"vfiod_user_region_locked_bytes",
       "The part of vfiod_user_locked_bytes held by the user's hugetlb regions",
       &UserUsageView::region_locked_bytes},
      {"vfiod_user_mappings", "Live DMA mappings the user owns", &UserUsageView::mappings},
      {"vfiod_user_containers", "Live containers the user owns", &UserUsageView::containers}};
  for (const Column& c : kColumns) {
    out.Family(c.name, kGauge, c.help);
    for (const auto& [uid, use] : users) {
      out.Sample({{"uid", std::to_string(uid)}}, use.*c.field);
    }
  }
}

void RenderContainers(Exposition& out, const std::vector<ContainerView>& containers) {
  auto labels = [](const ContainerView& c) -> Labels {
    return {{"container", std::to_string(c.id)},
            {"name", c.name},
            {"owner_uid", std::to_string(c.owner_uid)}};
  };
  out.Family("vfiod_container_mappings", kGauge, "Live DMA mappings in the container");
  for (const auto& c : containers) {
    out.Sample(labels(c), c.mappings);
  }
  out.Family("vfiod_container_mapped_bytes", kGauge, "Bytes mapped in the container");
  for (const auto& c : containers) {
    out.Sample(labels(c), c.mapped_bytes);
  }
  out.Family("vfiod_container_dma_entries", kGauge,
             "VFIO DMA mapping entries the container's mappings use");
  for (const auto& c : containers) {
    out.Sample(labels(c), c.dma_entries_used);
  }
  out.Family("vfiod_container_dma_entries_available", kGauge,
             "VFIO DMA mapping entries the container's IOMMU has left (DMA_AVAIL); absent "
             "when the kernel does not say");
  for (const auto& c : containers) {
    if (c.iommu.dma_avail) {
      out.Sample(labels(c), uint64_t{*c.iommu.dma_avail});
    }
  }
}

void RenderRequests(Exposition& out, const StatsSnapshot& s) {
  out.Family("vfiod_requests_total", kCounter, "API requests answered, by method");
  for (const auto& [method, m] : s.by_method) {
    out.Sample({{"method", method}}, m.calls);
  }
  out.Family("vfiod_request_errors_total", kCounter,
             "API requests answered with an error, by method and error code");
  for (const auto& [method, m] : s.by_method) {
    for (const auto& [code, n] : m.errors_by_code) {
      out.Sample({{"method", method}, {"code", code}}, n);
    }
  }
  out.Family("vfiod_request_seconds_total", kCounter,
             "Time spent answering API requests, by method");
  for (const auto& [method, m] : s.by_method) {
    out.Sample({{"method", method}}, static_cast<double>(m.total_us) / 1e6);
  }
  out.Family("vfiod_request_max_seconds", kGauge,
             "The longest answer to one API request since start, by method");
  for (const auto& [method, m] : s.by_method) {
    out.Sample({{"method", method}}, static_cast<double>(m.max_us) / 1e6);
  }
  // A stage a method never spent time in has no sample (most methods pass
  // only parse, queue, other and reply).
  out.Family("vfiod_request_stage_seconds_total", kCounter,
             "Time of API requests by method and stage: parse, queue, then the handler's "
             "params, lookup, lock_wait, prepare, plan, ioctl, bookkeeping, record, result, other, "
             "then reply");
  for (const auto& [method, m] : s.by_method) {
    for (std::size_t i = 0; i < kStageCount; ++i) {
      if (m.stage_ns[i] != 0) {
        out.Sample({{"method", method}, {"stage", std::string(StageName(static_cast<Stage>(i)))}},
                   static_cast<double>(m.stage_ns[i]) / 1e9);
      }
    }
  }
}

void RenderDma(Exposition& out, const char* what, const DmaCounters& c) {
  const std::string base = std::string("vfiod_") + what;
  const std::string help_what = std::string(what) == "map"
                                    ? "maps (dma.alloc, dma.map_fd, dma.map_bar)"
                                    : "unmaps (dma.free, a session's or container's release)";
  out.Family(base + "_duration_seconds", kHistogram,
             "Time of " + help_what + ": the kernel work under the container's lock");
  out.Histogram({}, LatencyHistogram::kBoundsUs, c.latency.counts, c.latency.sum_us);
  Counter(out, (base + "_bytes_total").c_str(), ("Bytes of " + help_what).c_str(), c.bytes);
  Counter(out, (base + "_ioctls_total").c_str(), ("VFIO ioctls of " + help_what).c_str(), c.ioctls);
}

}  // namespace

std::string RenderMetrics(const MetricsView& view) {
  Exposition out;
  RenderDaemon(out, view.status);
  RenderHoldings(out, view.status);
  RenderUsers(out, view.users);
  RenderContainers(out, view.containers);
  RenderRequests(out, view.stats);
  RenderDma(out, "map", view.stats.map);
  RenderDma(out, "unmap", view.stats.unmap);
  return out.Take();
}

}  // namespace vfiod::service
