// Writing a state record (EncodeStateRecord); reading it back is
// state_record_decode.cc.
#include "lifecycle/state_record.h"

#include <algorithm>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "lifecycle/state_record_format.h"

namespace vfiod::lifecycle {

namespace {

using nlohmann::json;

uint64_t Fnv1a64(std::string_view bytes) {
  uint64_t hash = 0xcbf29ce484222325ULL;
  for (unsigned char c : bytes) {
    hash = (hash ^ c) * 0x100000001b3ULL;
  }
  return hash;
}

std::string Hex64(uint64_t value) {
  char buf[17];
  (void)std::snprintf(buf, sizeof(buf), "%016llx", static_cast<unsigned long long>(value));
  return buf;
}

json EncodeContainer(const ContainerRecord& c, uint32_t version) {
  json out{{"id", c.id},
           {"name", c.name},
           {"owner_uid", c.owner_uid},
           {"shared_users", c.shared_users},
           {"shared_groups", c.shared_groups},
           {"groups", c.groups},
           {"fd_name", c.fd_name},
           {"session", c.session}};
  if (version >= 5) {
    out["devices"] = json::array();
    for (const DeviceRecord& d : c.devices) {
      out["devices"].push_back(json{{"bdf", d.bdf}, {"group", d.group}, {"fd_name", d.fd_name}});
    }
  }
  return out;
}

json EncodeEntries(const std::vector<EntryRecord>& entries) {
  json out = json::array();
  for (const EntryRecord& e : entries) {
    out.push_back(json{{"iova", e.iova}, {"size", e.size}, {"offset", e.offset}});
  }
  return out;
}

json EncodeMapping(const MappingRecord& m) {
  return json{
      {"id", m.id},
      {"container", m.container},
      {"iova", m.iova},
      {"size", m.size},
      {"backing", m.backing},
      {"fd_name", m.fd_name},
      {"owner_uid", m.owner_uid},
      {"name", m.name},
      {"session", m.session},
      {"mmio", m.mmio},
      {"bar",
       m.mmio && !m.bar_bdf.empty() ? json{{"bdf", m.bar_bdf}, {"index", m.bar_index}} : json()},
      {"region", m.region},
      {"entries", EncodeEntries(m.entries)}};
}

json EncodeRegion(const RegionRecord& r) {
  return json{{"id", r.id},           {"owner_uid", r.owner_uid}, {"session", r.session},
              {"fd_name", r.fd_name}, {"offset", r.offset},       {"size", r.size},
              {"charged", r.charged}};
}

json EncodeOwner(const OwnerRecord& o) {
  return json{{"uid", o.uid},
              {"locked_bytes", o.locked_bytes},
              {"mappings", o.mappings},
              {"containers", o.containers}};
}

json EncodeBody(const StateRecord& record) {
  json doc = json::object();
  doc["format"] = kStateRecordFormat;
  doc["version"] = record.version;
  doc["generation"] = record.generation;
  doc["next_id"] = record.next_id;
  doc["mapping_generation"] = record.mapping_generation;
  doc["containers"] = json::array();
  for (const auto& c : record.containers) {
    doc["containers"].push_back(EncodeContainer(c, record.version));
  }
  doc["regions"] = json::array();
  for (const auto& g : record.regions) {
    doc["regions"].push_back(EncodeRegion(g));
  }
  doc["mappings"] = json::array();
  for (const auto& m : record.mappings) {
    doc["mappings"].push_back(EncodeMapping(m));
  }
  doc["owners"] = json::array();
  for (const auto& o : record.owners) {
    doc["owners"].push_back(EncodeOwner(o));
  }
  return doc;
}

}  // namespace

std::string StateRecordChecksum(const nlohmann::json& body) { return Hex64(Fnv1a64(body.dump())); }

bool IsSessionToken(std::string_view text) {
  return text.size() == kSessionTokenLength && std::all_of(text.begin(), text.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
         });
}

std::string EncodeStateRecord(const StateRecord& record) {
  json doc = EncodeBody(record);
  doc["checksum"] = StateRecordChecksum(doc);
  return doc.dump();
}

}  // namespace vfiod::lifecycle
