// The JSON shapes of the service's views (documented in proto/openrpc.json).
#pragma once

#include <nlohmann/json.hpp>

#include "service/stats.h"
#include "service/views.h"

namespace vfiod::rpc {

[[nodiscard]] nlohmann::json ToJson(const service::ExtensionsView& e);
[[nodiscard]] nlohmann::json ToJson(const service::StatusView& s);
[[nodiscard]] nlohmann::json ToJson(const service::StatsSnapshot& s);
/// A device.list entry.
[[nodiscard]] nlohmann::json DeviceSummaryJson(const service::DeviceView& d);
/// device.info: the summary plus ids, group members, BARs and (when known)
/// VFIO regions and IRQs.
[[nodiscard]] nlohmann::json DeviceDetailJson(const service::DeviceView& d);
/// container.create/attach/info.
[[nodiscard]] nlohmann::json ContainerJson(const service::ContainerView& c);
/// A container.list entry.
[[nodiscard]] nlohmann::json ContainerSummaryJson(const service::ContainerView& c);
/// A dma.list entry.
[[nodiscard]] nlohmann::json MappingSummaryJson(const service::MappingView& m);
/// A scatter list's pieces: [{offset, size, iova}].
[[nodiscard]] nlohmann::json SegmentsJson(const std::vector<dma::PlacedPiece>& segments);
/// dma.info: the summary plus chunks, ioctls, segments (a scatter list's
/// pieces, when it has several) and the contiguity report.
[[nodiscard]] nlohmann::json MappingDetailJson(const service::MappingView& m);
[[nodiscard]] nlohmann::json ContiguityJson(const dma::ContiguityReport& r);
/// "0x1234" style lower-case hex.
[[nodiscard]] std::string Hex(uint64_t value, int digits);

}  // namespace vfiod::rpc
