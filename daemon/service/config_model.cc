// The "model" section of the config: the machine the model kernel pretends to be.
#include <algorithm>
#include <set>
#include <string>

#include "proto/page_sizes.h"
#include "service/config.h"
#include "service/config_reader.h"

namespace vfiod::service {

using config_detail::Json;

namespace {

using config_detail::Bad;
using config_detail::CheckObject;
using config_detail::IfPresent;
using config_detail::Index;
using config_detail::Key;
using config_detail::ReadInteger;

ModelDevice ReadModelDevice(const Json& j, const std::string& path) {
  CheckObject(j, path, {"bdf", "vendor", "device", "group", "bound"});
  for (const char* required : {"bdf", "vendor", "device", "group"}) {
    if (!j.contains(required)) {
      Bad(Key(path, required), "missing (a model device needs bdf, vendor, device and group)");
    }
  }
  ModelDevice device;
  device.bdf = config_detail::ReadBdf(j["bdf"], Key(path, "bdf"));
  device.vendor = config_detail::ReadPciId(j["vendor"], Key(path, "vendor"));
  device.device = config_detail::ReadPciId(j["device"], Key(path, "device"));
  device.group = static_cast<uint32_t>(ReadInteger(j["group"], Key(path, "group"), 0, 0x7fffffff));
  IfPresent(j, path, "bound", [&](const Json& v, const std::string& p) {
    device.bound = config_detail::ReadBool(v, p);
  });
  return device;
}

// {"start": S, "last": L}, inclusive, 4K-page granular.
IovaRange ReadIovaRange(const Json& j, const std::string& path) {
  CheckObject(j, path, {"start", "last"});
  if (!j.contains("start") || !j.contains("last")) {
    Bad(path, "an IOVA range needs \"start\" and \"last\"");
  }
  IovaRange range{ReadInteger(j["start"], Key(path, "start"), 0, UINT64_MAX),
                  ReadInteger(j["last"], Key(path, "last"), 0, UINT64_MAX)};
  if (range.start % kPage4K != 0 || (range.last + 1) % kPage4K != 0) {
    Bad(path, "start and last + 1 must be multiples of 4K");
  }
  if (range.last < range.start) {
    Bad(path, "last is below start");
  }
  return range;
}

}  // namespace

ModelConfig ReadModelSection(const Json& j, const std::string& path) {
  CheckObject(j, path, {"devices", "iova_ranges", "dma_entry_limit", "map_dma_us_per_mib"});
  ModelConfig model;
  IfPresent(j, path, "devices", [&](const Json& v, const std::string& p) {
    std::set<std::string> seen;
    for (size_t i = 0; i < config_detail::RequireArray(v, p).size(); ++i) {
      model.devices.push_back(ReadModelDevice(v[i], Index(p, i)));
      if (!seen.insert(model.devices.back().bdf).second) {
        Bad(Key(Index(p, i), "bdf"), "device " + model.devices.back().bdf + " is listed twice");
      }
    }
  });
  IfPresent(j, path, "iova_ranges", [&](const Json& v, const std::string& p) {
    model.iova_ranges.clear();
    for (size_t i = 0; i < config_detail::RequireArray(v, p).size(); ++i) {
      IovaRange range = ReadIovaRange(v[i], Index(p, i));
      if (!model.iova_ranges.empty() && range.start <= model.iova_ranges.back().last) {
        Bad(Index(p, i), "ranges must be sorted and must not overlap");
      }
      model.iova_ranges.push_back(range);
    }
    if (model.iova_ranges.empty()) {
      Bad(p, "at least one IOVA range is needed");
    }
  });
  IfPresent(j, path, "dma_entry_limit", [&](const Json& v, const std::string& p) {
    model.dma_entry_limit = static_cast<uint32_t>(ReadInteger(v, p, 1, 0x7fffffff));
  });
  IfPresent(j, path, "map_dma_us_per_mib", [&](const Json& v, const std::string& p) {
    model.map_dma_us_per_mib = static_cast<uint32_t>(ReadInteger(v, p, 0, 1'000'000));
  });
  return model;
}

}  // namespace vfiod::service
