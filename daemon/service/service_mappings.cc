// The service's mapping records: one small slot per live mapping (see
// Service::MappingSlot), the views built from them on demand, and who may
// see which. All functions here need mu_ held.
#include <algorithm>

#include "dma/engine.h"
#include "service/managed_container.h"
#include "service/service.h"

namespace vfiod::service {

namespace {

// Slots kept when nothing is mapped; past this many they are given back.
constexpr size_t kSlotsKeptIdle = 256;

}  // namespace

void AddDetail(MappingView& view, const dma::MappingReport& report) {
  view.chunks = report.chunks;
  view.ioctls = report.map_ioctls;
  view.segments.clear();
  for (const dma::SegmentReport& piece : report.segments) {
    view.segments.push_back(SegmentView{piece.offset, piece.size, piece.iova});
  }
}

const Service::MappingSlot* Service::FindMappingLocked(MappingId id) const {
  const uint64_t index = id & 0xffffffff;
  if (index == 0 || index > mapping_slots_.size()) {
    return nullptr;
  }
  const MappingSlot& slot = mapping_slots_[index - 1];
  return slot.container != 0 && slot.generation == id >> 32 ? &slot : nullptr;
}

MappingId Service::AddMappingLocked(const MappingView& view, uint64_t engine_id, SessionId owner,
                                    uid_t uid, const std::string& name, bool covered) {
  size_t index = mapping_slots_.size();
  if (free_mapping_slots_.empty()) {
    mapping_slots_.emplace_back().generation = mapping_generation_floor_;
  } else {
    index = free_mapping_slots_.back();
    free_mapping_slots_.pop_back();
  }
  MappingSlot& slot = mapping_slots_[index];
  slot.container = view.container;
  slot.owner = owner;
  slot.engine_id = engine_id;
  slot.iova = view.iova;
  slot.size = view.size;
  slot.owner_uid = uid;
  slot.backing = wire::ParseBacking(view.backing).value_or(wire::Backing::kBar);
  slot.flags =
      static_cast<uint8_t>((view.mmio ? kSlotMmio : 0) | (view.aligned ? kSlotAligned : 0) |
                           (view.mmio_no_pin ? kSlotMmioNoPin : 0) | (covered ? kSlotCovered : 0));
  const MappingId id = IdOfSlot(index);
  if (!name.empty()) {
    mapping_names_[id] = name;
  }
  ++live_mappings_;
  pinned_bytes_ += ChargedBytes(slot);
  return id;
}

void Service::RemoveMappingLocked(MappingId id) {
  const MappingSlot* found = FindMappingLocked(id);
  if (found == nullptr) {
    return;
  }
  const size_t index = (id & 0xffffffff) - 1;
  MappingSlot& slot = mapping_slots_[index];
  const uint64_t pinned = ChargedBytes(slot);
  UnreserveLocked(slot.owner_uid, pinned, 1, 0);
  pinned_bytes_ -= std::min(pinned_bytes_, pinned);
  --live_mappings_;
  if (!mapping_names_.empty()) {
    mapping_names_.erase(id);
  }
  const uint32_t next_generation = slot.generation + 1;
  slot = MappingSlot{};
  slot.generation = next_generation;  // the freed id is never handed out again
  free_mapping_slots_.push_back(static_cast<uint32_t>(index));
  if (live_mappings_ == 0 && mapping_slots_.size() > kSlotsKeptIdle) {
    ReleaseMappingSlotsLocked();
  }
}

void Service::ReleaseMappingSlotsLocked() {
  // New slots start past every generation used, so no freed id comes back.
  for (const MappingSlot& slot : mapping_slots_) {
    mapping_generation_floor_ = std::max(mapping_generation_floor_, slot.generation);
  }
  std::deque<MappingSlot>().swap(mapping_slots_);
  std::vector<uint32_t>().swap(free_mapping_slots_);
}

MappingView Service::SummaryLocked(MappingId id, const MappingSlot& slot) const {
  MappingView v;
  v.id = id;
  v.container = slot.container;
  v.owner_uid = slot.owner_uid;
  if (auto name = mapping_names_.find(id); name != mapping_names_.end()) {
    v.name = name->second;
  }
  v.iova = slot.iova;
  v.size = slot.size;
  v.backing = wire::BackingName(slot.backing);
  v.mmio = (slot.flags & kSlotMmio) != 0;
  v.aligned = (slot.flags & kSlotAligned) != 0;
  v.mmio_no_pin = (slot.flags & kSlotMmioNoPin) != 0;
  return v;
}

std::vector<std::pair<MappingView, uint64_t>> Service::VisibleMappingsLocked(
    const Caller& caller, std::optional<ContainerId> container) const {
  std::vector<std::pair<MappingView, uint64_t>> out;
  ForEachMappingLocked([&](MappingId id, const MappingSlot& slot) {
    if ((!container || slot.container == *container) &&
        Authorize(caller, slot, Access::kSee, "dma.list")) {
      out.emplace_back(SummaryLocked(id, slot), slot.engine_id);
    }
  });
  std::sort(out.begin(), out.end(),
            [](const auto& a, const auto& b) { return a.first.id < b.first.id; });
  return out;
}

}  // namespace vfiod::service
