// Reading a state record back (DecodeStateRecord): every field checked for
// presence, type and range, every reference between objects resolved, so a
// record that decodes is one the service can act on.
#include <algorithm>
#include <climits>
#include <initializer_list>
#include <nlohmann/json.hpp>
#include <set>

#include "lifecycle/fd_name.h"
#include "lifecycle/state_record.h"
#include "lifecycle/state_record_format.h"
#include "proto/backing.h"
#include "proto/framing.h"

namespace vfiod::lifecycle {

namespace {

using nlohmann::json;

constexpr uint64_t kMaxId = UINT32_MAX - 1;  // uid_t/gid_t: (uid_t)-1 means "none"

// --- decoding: every accessor checks presence, type and range --------------

std::unexpected<Error> Bad(const std::string& where, const std::string& what) {
  return Fail(EINVAL, "state record", where + ": " + what);
}

/// `obj` has exactly the keys `keys`.
Result<void> ExactKeys(const json& obj, std::initializer_list<const char*> keys,
                       const std::string& where) {
  if (!obj.is_object()) {
    return Bad(where, "not an object");
  }
  for (const char* key : keys) {
    if (!obj.contains(key)) {
      return Bad(where, std::string("missing \"") + key + "\"");
    }
  }
  if (obj.size() != keys.size()) {
    return Bad(where, "unknown keys");
  }
  return Ok();
}

Result<uint64_t> Unsigned(const json& obj, const char* key, const std::string& where,
                          uint64_t max = UINT64_MAX) {
  const json& v = obj.at(key);
  if (!v.is_number_unsigned() || v.get<uint64_t>() > max) {
    return Bad(where + "." + key, "not an integer in [0, " + std::to_string(max) + "]");
  }
  return v.get<uint64_t>();
}

Result<std::string> String(const json& obj, const char* key, const std::string& where) {
  const json& v = obj.at(key);
  if (!v.is_string()) {
    return Bad(where + "." + key, "not a string");
  }
  return v.get<std::string>();
}

/// The array `obj[key]`; `where` names `obj` (empty: the document itself).
Result<const json*> Array(const json& obj, const char* key, const std::string& where) {
  const json& v = obj.at(key);
  if (!v.is_array()) {
    return Bad(where.empty() ? std::string(key) : where + "." + key, "not an array");
  }
  return &v;
}

Result<std::string> FdName(const json& obj, const std::string& where, bool may_be_empty) {
  auto name = VFIOD_TRY(String(obj, "fd_name", where));
  if (!(may_be_empty && name.empty()) && !IsValidFdName(name)) {
    return Bad(where + ".fd_name", "not a valid fd name");
  }
  return name;
}

/// A sorted, duplicate-free list of integers in [0, max].
template <class T>
Result<std::vector<T>> IdList(const json& obj, const char* key, const std::string& where,
                              uint64_t max) {
  const json& v = *VFIOD_TRY(Array(obj, key, where));
  std::vector<T> out;
  for (const json& item : v) {
    if (!item.is_number_unsigned() || item.get<uint64_t>() > max) {
      return Bad(where + "." + key, "an entry out of range");
    }
    out.push_back(static_cast<T>(item.get<uint64_t>()));
  }
  if (!std::is_sorted(out.begin(), out.end()) ||
      std::adjacent_find(out.begin(), out.end()) != out.end()) {
    return Bad(where + "." + key, "not sorted and unique");
  }
  return out;
}

/// The "session" of an object named `name`: a token when unnamed, else empty.
Result<std::string> SessionToken(const json& obj, const std::string& name,
                                 const std::string& where) {
  auto token = VFIOD_TRY(String(obj, "session", where));
  if (name.empty() ? !IsSessionToken(token) : !token.empty()) {
    return Bad(where + ".session",
               "not a session token of an unnamed object, or set on a named one");
  }
  return token;
}

/// Whether `bdf` has the form of a PCI device name: 1 to 32 of [0-9a-f:.].
bool IsDeviceName(const std::string& bdf) {
  return !bdf.empty() && bdf.size() <= 32 &&
         bdf.find_first_not_of("0123456789abcdef:.") == std::string::npos;
}

/// A container's "devices" (version 5): {"bdf", "group", "fd_name"} each, a
/// device name, one of the container's groups, an fd name; bdfs unique.
Result<std::vector<DeviceRecord>> DecodeDevices(const json& obj, const ContainerRecord& c,
                                                const std::string& where) {
  const json& v = *VFIOD_TRY(Array(obj, "devices", where));
  std::vector<DeviceRecord> out;
  for (size_t i = 0; i < v.size(); ++i) {
    const std::string at = where + ".devices[" + std::to_string(i) + "]";
    VFIOD_TRY(ExactKeys(v[i], {"bdf", "group", "fd_name"}, at));
    DeviceRecord d;
    d.bdf = VFIOD_TRY(String(v[i], "bdf", at));
    const uint64_t group = VFIOD_TRY(Unsigned(v[i], "group", at, INT_MAX));
    d.group = static_cast<int>(group);
    d.fd_name = VFIOD_TRY(FdName(v[i], at, false));
    if (!IsDeviceName(d.bdf)) {
      return Bad(at + ".bdf", "not a device name");
    }
    if (!std::binary_search(c.groups.begin(), c.groups.end(), d.group)) {
      return Bad(at + ".group", "not one of the container's groups");
    }
    if (std::any_of(out.begin(), out.end(),
                    [&](const DeviceRecord& o) { return o.bdf == d.bdf; })) {
      return Bad(at + ".bdf", "a repeated device");
    }
    out.push_back(std::move(d));
  }
  return out;
}

Result<ContainerRecord> DecodeContainer(const json& obj, const std::string& where,
                                        uint64_t version) {
  if (version >= 5) {
    VFIOD_TRY(ExactKeys(obj,
                        {"id", "name", "owner_uid", "shared_users", "shared_groups", "groups",
                         "fd_name", "session", "devices"},
                        where));
  } else {
    VFIOD_TRY(ExactKeys(obj,
                        {"id", "name", "owner_uid", "shared_users", "shared_groups", "groups",
                         "fd_name", "session"},
                        where));
  }
  ContainerRecord c;
  c.id = VFIOD_TRY(Unsigned(obj, "id", where));
  c.name = VFIOD_TRY(String(obj, "name", where));
  c.owner_uid = static_cast<uid_t>(VFIOD_TRY(Unsigned(obj, "owner_uid", where, kMaxId)));
  c.shared_users = VFIOD_TRY(IdList<uid_t>(obj, "shared_users", where, kMaxId));
  c.shared_groups = VFIOD_TRY(IdList<gid_t>(obj, "shared_groups", where, kMaxId));
  c.groups = VFIOD_TRY(IdList<int>(obj, "groups", where, INT_MAX));
  c.fd_name = VFIOD_TRY(FdName(obj, where, false));
  c.session = VFIOD_TRY(SessionToken(obj, c.name, where));
  if (version >= 5) {
    c.devices = VFIOD_TRY(DecodeDevices(obj, c, where));
  }
  return c;
}

bool KnownBacking(const std::string& backing) { return wire::ParseBacking(backing).has_value(); }

Result<EntryRecord> DecodeEntry(const json& obj, const std::string& where) {
  VFIOD_TRY(ExactKeys(obj, {"iova", "size", "offset"}, where));
  EntryRecord e;
  e.iova = VFIOD_TRY(Unsigned(obj, "iova", where));
  e.size = VFIOD_TRY(Unsigned(obj, "size", where));
  e.offset = VFIOD_TRY(Unsigned(obj, "offset", where));
  if (e.size == 0 || ((e.iova | e.size | e.offset) & (kEntryGranule - 1)) != 0) {
    return Bad(where, "size 0, or not aligned to 4 KiB");
  }
  if (e.iova + e.size < e.iova || e.offset + e.size < e.offset) {
    return Bad(where, "iova + size or offset + size wraps");
  }
  return e;
}

/// The entries of mapping `m`: each valid, and together [m.iova, m.iova +
/// m.size) in IOVA order with no gap and no overlap (or none at all).
Result<std::vector<EntryRecord>> DecodeEntries(const json& obj, const MappingRecord& m,
                                               const std::string& where) {
  const json& v = *VFIOD_TRY(Array(obj, "entries", where));
  std::vector<EntryRecord> out;
  out.reserve(v.size());
  uint64_t next = m.iova;  // where the next entry must start
  for (size_t i = 0; i < v.size(); ++i) {
    const std::string at = where + ".entries[" + std::to_string(i) + "]";
    EntryRecord e = VFIOD_TRY(DecodeEntry(v[i], at));
    if (e.iova != next || e.size > m.iova + m.size - e.iova) {
      return Bad(at, "overlaps, leaves a gap, or lies outside the mapping");
    }
    next = e.iova + e.size;
    out.push_back(e);
  }
  if (!out.empty() && next != m.iova + m.size) {
    return Bad(where + ".entries", "do not cover the whole mapping");
  }
  return out;
}

/// A BAR mapping's "bar": {"bdf", "index"}, or null (not known); null for memory.
Result<void> DecodeBar(const json& obj, MappingRecord& m, const std::string& where) {
  const json& bar = obj.at("bar");
  if (bar.is_null()) {
    return Ok();
  }
  if (!m.mmio) {
    return Bad(where + ".bar", "set on memory");
  }
  VFIOD_TRY(ExactKeys(bar, {"bdf", "index"}, where + ".bar"));
  m.bar_bdf = VFIOD_TRY(String(bar, "bdf", where + ".bar"));
  if (!IsDeviceName(m.bar_bdf)) {
    return Bad(where + ".bar.bdf", "not a device name");
  }
  m.bar_index = static_cast<uint32_t>(VFIOD_TRY(Unsigned(bar, "index", where + ".bar", 255)));
  return Ok();
}

Result<MappingRecord> DecodeMapping(const json& obj, const std::string& where, uint64_t version) {
  if (version >= 4) {
    VFIOD_TRY(ExactKeys(obj,
                        {"id", "container", "iova", "size", "backing", "fd_name", "owner_uid",
                         "name", "session", "mmio", "bar", "region", "entries"},
                        where));
  } else {
    VFIOD_TRY(ExactKeys(obj,
                        {"id", "container", "iova", "size", "backing", "fd_name", "owner_uid",
                         "name", "session", "mmio", "entries"},
                        where));
  }
  MappingRecord m;
  m.id = VFIOD_TRY(Unsigned(obj, "id", where));
  m.container = VFIOD_TRY(Unsigned(obj, "container", where));
  m.iova = VFIOD_TRY(Unsigned(obj, "iova", where));
  m.size = VFIOD_TRY(Unsigned(obj, "size", where));
  if (m.size == 0 || m.iova + m.size < m.iova) {
    return Bad(where, "size 0, or iova + size wraps");
  }
  m.backing = VFIOD_TRY(String(obj, "backing", where));
  if (!KnownBacking(m.backing)) {
    return Bad(where + ".backing", "unknown backing \"" + m.backing + "\"");
  }
  m.mmio = m.backing == "bar";
  if (!obj.at("mmio").is_boolean() || obj.at("mmio").get<bool>() != m.mmio) {
    return Bad(where + ".mmio", "not a boolean, or disagrees with the backing");
  }
  if (version >= 4) {
    VFIOD_TRY(DecodeBar(obj, m, where));
    m.region = VFIOD_TRY(Unsigned(obj, "region", where));
    if (m.region != 0 && (m.mmio || !obj.at("fd_name").is_string() ||
                          !obj.at("fd_name").get<std::string>().empty())) {
      return Bad(where + ".region", "set on a BAR or on a mapping with its own fd");
    }
  }
  // Memory has an fd of its own, unless it is a slice of a region.
  m.fd_name = VFIOD_TRY(FdName(obj, where, m.mmio || m.region != 0));
  m.owner_uid = static_cast<uid_t>(VFIOD_TRY(Unsigned(obj, "owner_uid", where, kMaxId)));
  m.name = VFIOD_TRY(String(obj, "name", where));
  m.session = VFIOD_TRY(SessionToken(obj, m.name, where));
  m.entries = VFIOD_TRY(DecodeEntries(obj, m, where));
  return m;
}

Result<RegionRecord> DecodeRegion(const json& obj, const std::string& where) {
  VFIOD_TRY(ExactKeys(obj, {"id", "owner_uid", "session", "fd_name", "offset", "size", "charged"},
                      where));
  RegionRecord r;
  r.id = VFIOD_TRY(Unsigned(obj, "id", where));
  r.owner_uid = static_cast<uid_t>(VFIOD_TRY(Unsigned(obj, "owner_uid", where, kMaxId)));
  r.session = VFIOD_TRY(String(obj, "session", where));
  if (!r.session.empty() && !IsSessionToken(r.session)) {
    return Bad(where + ".session", "neither empty nor a session token");
  }
  r.fd_name = VFIOD_TRY(FdName(obj, where, false));
  r.offset = VFIOD_TRY(Unsigned(obj, "offset", where));
  r.size = VFIOD_TRY(Unsigned(obj, "size", where));
  if (r.size == 0 || r.offset + r.size < r.offset) {
    return Bad(where, "size 0, or offset + size wraps");
  }
  if (!obj.at("charged").is_boolean()) {
    return Bad(where + ".charged", "not a boolean");
  }
  r.charged = obj.at("charged").get<bool>();
  return r;
}

Result<OwnerRecord> DecodeOwner(const json& obj, const std::string& where) {
  VFIOD_TRY(ExactKeys(obj, {"uid", "locked_bytes", "mappings", "containers"}, where));
  OwnerRecord o;
  o.uid = static_cast<uid_t>(VFIOD_TRY(Unsigned(obj, "uid", where, kMaxId)));
  o.locked_bytes = VFIOD_TRY(Unsigned(obj, "locked_bytes", where));
  o.mappings = VFIOD_TRY(Unsigned(obj, "mappings", where));
  o.containers = VFIOD_TRY(Unsigned(obj, "containers", where));
  return o;
}

/// Decodes every element of array `key` with `decode`.
template <class T, class Decode>
Result<std::vector<T>> DecodeArray(const json& doc, const char* key, Decode decode) {
  const json& v = *VFIOD_TRY(Array(doc, key, ""));
  std::vector<T> out;
  out.reserve(v.size());
  for (size_t i = 0; i < v.size(); ++i) {
    out.push_back(VFIOD_TRY(decode(v[i], std::string(key) + "[" + std::to_string(i) + "]")));
  }
  return out;
}

/// Ids unique and non-zero, fd names unique, every mapping's container known.
Result<void> CheckReferences(const StateRecord& r) {
  std::set<uint64_t> containers;
  std::set<uint64_t> regions;
  std::set<uint64_t> mappings;
  std::set<uid_t> owners;
  std::set<std::string> fd_names;
  for (const auto& c : r.containers) {
    if (c.id == 0 || c.id >= r.next_id || !containers.insert(c.id).second ||
        !fd_names.insert(c.fd_name).second) {
      return Bad("containers", "id 0, not below next_id, or a repeated id or fd name");
    }
    for (const DeviceRecord& d : c.devices) {
      if (!fd_names.insert(d.fd_name).second) {
        return Bad("containers", "a device's fd name is repeated");
      }
    }
  }
  for (const auto& g : r.regions) {
    if (g.id == 0 || g.id >= r.next_id || !regions.insert(g.id).second ||
        !fd_names.insert(g.fd_name).second) {
      return Bad("regions", "id 0, not below next_id, or a repeated id or fd name");
    }
  }
  for (const auto& m : r.mappings) {
    if ((m.id & 0xffffffff) == 0 || (m.id >> 32) >= r.mapping_generation ||
        !mappings.insert(m.id).second ||
        (!m.fd_name.empty() && !fd_names.insert(m.fd_name).second)) {
      return Bad("mappings",
                 "slot 0, generation not below mapping_generation, or a repeated "
                 "id or fd name");
    }
    if (!containers.contains(m.container)) {
      return Bad("mappings", "mapping " + std::to_string(m.id) + " names an unknown container");
    }
    if (m.region != 0 && !regions.contains(m.region)) {
      return Bad("mappings", "mapping " + std::to_string(m.id) + " names an unknown region");
    }
  }
  for (const auto& o : r.owners) {
    if (!owners.insert(o.uid).second) {
      return Bad("owners", "a repeated uid");
    }
  }
  return Ok();
}

}  // namespace

Result<StateRecord> DecodeStateRecord(std::string_view bytes) {
  // A record is six levels deep; the checksum's dump and the comparisons
  // recurse, so a deeper document is refused before it is parsed.
  if (wire::JsonNestingDepth(bytes) > wire::kMaxJsonDepth) {
    return Bad("record", "nested deeper than " + std::to_string(wire::kMaxJsonDepth));
  }
  json doc = json::parse(bytes, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded() || !doc.is_object()) {
    return Bad("record", "not a JSON object");
  }
  if (!doc.contains("format") || doc["format"] != kStateRecordFormat) {
    return Bad("format", "not a vfiod state record");
  }
  if (!doc.contains("version") || !doc["version"].is_number_unsigned() ||
      doc["version"].get<uint64_t>() < kOldestStateRecordVersion ||
      doc["version"].get<uint64_t>() > kStateRecordVersion) {
    return Bad("version", "not a version from " + std::to_string(kOldestStateRecordVersion) +
                              " to " + std::to_string(kStateRecordVersion) + " (unknown)");
  }
  const uint64_t version = doc["version"].get<uint64_t>();
  if (!doc.contains("checksum") || !doc["checksum"].is_string()) {
    return Bad("checksum", "missing");
  }
  const std::string checksum = doc["checksum"].get<std::string>();
  doc.erase("checksum");
  if (StateRecordChecksum(doc) != checksum) {
    return Bad("checksum", "does not match the contents");
  }
  if (version >= 4) {
    VFIOD_TRY(ExactKeys(doc,
                        {"format", "version", "generation", "next_id", "mapping_generation",
                         "containers", "regions", "mappings", "owners"},
                        "record"));
  } else {
    VFIOD_TRY(ExactKeys(doc,
                        {"format", "version", "generation", "next_id", "mapping_generation",
                         "containers", "mappings", "owners"},
                        "record"));
  }
  StateRecord r;
  r.generation = VFIOD_TRY(Unsigned(doc, "generation", "record"));
  r.next_id = VFIOD_TRY(Unsigned(doc, "next_id", "record"));
  r.mapping_generation =
      static_cast<uint32_t>(VFIOD_TRY(Unsigned(doc, "mapping_generation", "record", UINT32_MAX)));
  r.containers = VFIOD_TRY(DecodeArray<ContainerRecord>(
      doc, "containers", [version](const json& obj, const std::string& where) {
        return DecodeContainer(obj, where, version);
      }));
  if (version >= 4) {
    r.regions = VFIOD_TRY(DecodeArray<RegionRecord>(doc, "regions", DecodeRegion));
  }
  r.mappings = VFIOD_TRY(DecodeArray<MappingRecord>(
      doc, "mappings", [version](const json& obj, const std::string& where) {
        return DecodeMapping(obj, where, version);
      }));
  r.owners = VFIOD_TRY(DecodeArray<OwnerRecord>(doc, "owners", DecodeOwner));
  VFIOD_TRY(CheckReferences(r));
  return r;
}

}  // namespace vfiod::lifecycle
