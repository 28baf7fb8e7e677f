#include "rpc/methods_json.h"

#include <fmt/format.h>

#include "service/config.h"

namespace vfiod::rpc {

using nlohmann::json;

std::string Hex(uint64_t value, int digits) { return fmt::format("{:#0{}x}", value, digits + 2); }

json ToJson(const service::ExtensionsView& e) {
  return {{"type1v2", e.type1v2},
          {"unmap_all", e.unmap_all},
          {"update_vaddr", e.update_vaddr},
          {"mmio_no_pin", e.mmio_no_pin}};
}

json ToJson(const service::StatusView& s) {
  json lingering = json::array();
  for (const auto& l : s.lingering) {
    lingering.push_back({{"container", l.container},
                         {"owner_uid", l.owner_uid},
                         {"groups", l.groups},
                         {"holders", l.holders},
                         {"seconds", l.seconds}});
  }
  return {{"version", s.version},
          {"kernel", s.kernel},
          {"api_version", s.api_version},
          {"extensions", ToJson(s.extensions)},
          {"uptime_s", s.uptime_s},
          {"clients", s.clients},
          {"containers", s.containers},
          {"mappings", s.mappings},
          {"locked_bytes", s.locked_bytes},
          {"dma_entries", s.dma_entries},
          {"region_locked_bytes", s.region_locked_bytes},
          {"max_locked_bytes",
           s.max_locked_bytes == service::kUnlimited ? json(nullptr) : json(s.max_locked_bytes)},
          {"lingering", std::move(lingering)},
          {"restart",
           {{"fd_store", s.fd_store},
            {"detached_sessions", s.detached_sessions},
            {"stored_fds_charged", s.stored_fds_charged},
            {"max_stored_fds", s.max_stored_fds},
            {"max_stored_fds_per_user", s.max_stored_fds_per_user}}}};
}

namespace {
json Counters(const service::DmaCounters& c) {
  using H = service::LatencyHistogram;
  return {
      {"calls", c.calls},
      {"bytes", c.bytes},
      {"ioctls", c.ioctls},
      {"latency",
       {{"bounds_us", H::kBoundsUs}, {"counts", c.latency.counts}, {"sum_us", c.latency.sum_us}}}};
}
json GroupJson(const std::optional<int>& group) { return group ? json(*group) : json(nullptr); }
json SharedJson(const service::ShareList& s) { return {{"users", s.users}, {"groups", s.groups}}; }
json ConfigJson(const service::ConfigSpaceView& c) {
  json caps = json::array();
  for (uint8_t id : c.capabilities) {
    caps.push_back(Hex(id, 2));
  }
  return {{"command", Hex(c.command, 4)},     {"status", Hex(c.status, 4)},
          {"interrupt_pin", c.interrupt_pin}, {"msi_vectors", c.msi_vectors},
          {"msix_vectors", c.msix_vectors},   {"capabilities", std::move(caps)}};
}
}  // namespace

json ToJson(const service::StatsSnapshot& s) {
  json by_method = json::object();
  for (const auto& [name, m] : s.by_method) {
    json stages = json::object();
    for (std::size_t i = 0; i < service::kStageCount; ++i) {
      stages[std::string(service::StageName(static_cast<service::Stage>(i)))] =
          m.stage_ns[i] / 1000;
    }
    by_method[name] = {{"calls", m.calls},
                       {"errors", m.errors},
                       {"total_us", m.total_us},
                       {"max_us", m.max_us},
                       {"errors_by_code", m.errors_by_code},
                       {"stages_us", std::move(stages)}};
  }
  return {{"requests", s.requests},
          {"errors", s.errors},
          {"by_method", std::move(by_method)},
          {"map", Counters(s.map)},
          {"unmap", Counters(s.unmap)}};
}

json DeviceSummaryJson(const service::DeviceView& d) {
  return {{"bdf", d.pci.bdf},
          {"vendor", Hex(d.pci.vendor, 4)},
          {"device", Hex(d.pci.device, 4)},
          {"class", Hex(d.pci.class_code, 6)},
          {"driver", d.pci.driver},
          {"iommu_group", GroupJson(d.pci.iommu_group)},
          {"viable", d.viable},
          {"numa_node", d.pci.numa_node},
          {"permitted", d.permitted}};
}

json DeviceDetailJson(const service::DeviceView& d) {
  json j = DeviceSummaryJson(d);
  j["subsystem_vendor"] = Hex(d.pci.subsystem_vendor, 4);
  j["subsystem_device"] = Hex(d.pci.subsystem_device, 4);
  j["driver_override"] = d.pci.driver_override;
  json members = json::array();
  for (const auto& m : d.pci.group_members) {
    members.push_back({{"bdf", m.name}, {"driver", m.driver}});
  }
  j["group_members"] = std::move(members);
  json bars = json::array();
  for (const auto& b : d.pci.bars) {
    if (b.size == 0) {
      continue;
    }
    bars.push_back({{"index", b.index},
                    {"size", b.size},
                    {"mem", !b.io},
                    {"prefetch", b.prefetchable},
                    {"is64", b.is_64bit}});
  }
  j["bars"] = std::move(bars);
  if (d.config) {
    j["config"] = ConfigJson(*d.config);
  }
  if (d.vfio) {
    json regions = json::array();
    for (const auto& r : d.vfio->regions) {
      json sparse = json::array();
      for (const auto& a : r.sparse_mmap.value_or(std::vector<kernel::SparseArea>{})) {
        sparse.push_back({{"offset", a.offset}, {"size", a.size}});
      }
      regions.push_back({{"index", r.index},
                         {"size", r.size},
                         {"flags", r.flags},
                         {"mmap", r.mmappable()},
                         {"sparse", std::move(sparse)}});
    }
    json irqs = json::array();
    for (const auto& i : d.vfio->irqs) {
      irqs.push_back({{"index", i.index}, {"count", i.count}, {"flags", i.flags}});
    }
    j["regions"] = std::move(regions);
    j["irqs"] = std::move(irqs);
  }
  return j;
}

json ContainerJson(const service::ContainerView& c) {
  json ranges = json::array();
  for (const auto& r : c.iommu.iova_ranges) {
    ranges.push_back({{"start", r.start}, {"last", r.last}});
  }
  return {{"container", c.id},
          {"name", c.name},
          {"owner_uid", c.owner_uid},
          {"shared_with", SharedJson(c.shared)},
          {"groups", c.groups},
          {"iova_ranges", std::move(ranges)},
          {"iova_pgsizes", c.iommu.iova_pgsizes},
          {"dma_avail", c.iommu.dma_avail ? json(*c.iommu.dma_avail) : json(nullptr)},
          {"extensions", ToJson(c.extensions)}};
}

json ContainerSummaryJson(const service::ContainerView& c) {
  return {{"container", c.id},
          {"name", c.name},
          {"owner_uid", c.owner_uid},
          {"shared_with", SharedJson(c.shared)},
          {"groups", c.groups},
          {"mappings", c.mappings},
          {"mapped_bytes", c.mapped_bytes}};
}

json MappingSummaryJson(const service::MappingView& m) {
  json j = {{"mapping", m.id}, {"container", m.container}, {"owner_uid", m.owner_uid},
            {"iova", m.iova},  {"size", m.size},           {"backing", m.backing}};
  if (!m.name.empty()) {
    j["name"] = m.name;
  }
  return j;
}

json ContiguityJson(const dma::ContiguityReport& r) {
  json histogram = json::object();
  for (size_t k = 0; k < r.run_histogram.size(); ++k) {
    if (r.run_histogram[k] == 0) {
      continue;
    }
    uint64_t lo = uint64_t{1} << k;
    std::string bucket = k == 0 ? "1" : fmt::format("{}-{}", lo, (lo << 1) - 1);
    histogram[bucket] = r.run_histogram[k];
  }
  json j = {{"state", r.state == dma::PhysState::kKnown ? "known" : "unknown"},
            {"runs", r.run_count},
            {"histogram", std::move(histogram)},
            {"folios", {{"4K", r.folios_4k}, {"2M", r.folios_2m}, {"1G", r.folios_1g}}},
            {"folio_source", r.folio_source}};
  if (!r.note.empty()) {
    j["note"] = r.note;
  }
  return j;
}

json SegmentsJson(const std::vector<dma::PlacedPiece>& segments) {
  json out = json::array();
  for (const auto& s : segments) {
    out.push_back({{"offset", s.offset}, {"size", s.size}, {"iova", s.iova}});
  }
  return out;
}

json MappingDetailJson(const service::MappingView& m) {
  json j = MappingSummaryJson(m);
  j["chunks"] = m.chunks;
  j["ioctls"] = m.ioctls;
  if (!m.segments.empty()) {
    j["segments"] = SegmentsJson(m.segments);
  }
  if (m.contiguity) {
    j["contiguity"] = ContiguityJson(*m.contiguity);
  }
  return j;
}

}  // namespace vfiod::rpc
