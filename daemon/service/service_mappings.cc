// The service's mapping index: one small slot per live mapping (see
// Service::MappingSlot), and the views built on demand from the engine's
// records. The *Locked functions need mu_ held; Describe* need it not held.
#include <algorithm>

#include "dma/engine.h"
#include "service/managed_container.h"
#include "service/service.h"

namespace vfiod::service {

namespace {

// Slots kept when nothing is mapped; past this many they are given back.
constexpr size_t kSlotsKeptIdle = 256;

}  // namespace

const Service::MappingSlot* Service::FindMappingLocked(MappingId id) const {
  const uint64_t index = id & 0xffffffff;
  if (index == 0 || index > mapping_slots_.size()) {
    return nullptr;
  }
  const MappingSlot& slot = mapping_slots_[index - 1];
  return slot.container != 0 && slot.generation == id >> 32 ? &slot : nullptr;
}

MappingId Service::AddMappingLocked(const MappingSlot& slot, const std::string& name) {
  size_t index = mapping_slots_.size();
  if (free_mapping_slots_.empty()) {
    mapping_slots_.emplace_back().generation = mapping_generation_floor_;
  } else {
    index = free_mapping_slots_.back();
    free_mapping_slots_.pop_back();
  }
  MappingSlot& stored = mapping_slots_[index];
  const uint32_t generation = stored.generation;
  stored = slot;
  stored.generation = generation;
  const MappingId id = IdOfSlot(index);
  if (!name.empty()) {
    mapping_names_[id] = name;
  }
  return id;
}

void Service::AddMappingAtLocked(MappingId id, const MappingSlot& slot, const std::string& name) {
  const size_t index = (id & 0xffffffff) - 1;
  while (mapping_slots_.size() <= index) {
    mapping_slots_.emplace_back().generation = mapping_generation_floor_;
  }
  MappingSlot& stored = mapping_slots_[index];
  stored = slot;
  stored.generation = static_cast<uint32_t>(id >> 32);
  if (!name.empty()) {
    mapping_names_[id] = name;
  }
}

std::vector<MappingId> Service::ForgetMappingsLocked(ContainerId container) {
  std::vector<MappingId> gone;
  ForEachMappingLocked([&](MappingId id, const MappingSlot& m) {
    if (m.container == container) {
      gone.push_back(id);
    }
  });
  for (MappingId id : gone) {
    RemoveMappingLocked(id);
  }
  return gone;
}

void Service::RebuildFreeMappingSlotsLocked() {
  free_mapping_slots_.clear();
  for (size_t i = mapping_slots_.size(); i-- > 0;) {  // the lowest index is reused first
    if (mapping_slots_[i].container == 0) {
      free_mapping_slots_.push_back(static_cast<uint32_t>(i));
    }
  }
}

void Service::RemoveMappingLocked(MappingId id) {
  if (FindMappingLocked(id) == nullptr) {
    return;
  }
  const size_t index = (id & 0xffffffff) - 1;
  MappingSlot& slot = mapping_slots_[index];
  UnreserveLocked(slot.owner_uid, slot.charged, 1, 0);
  if (!mapping_names_.empty()) {
    mapping_names_.erase(id);
  }
  const uint32_t next_generation = slot.generation + 1;
  slot = MappingSlot{};
  slot.generation = next_generation;  // the freed id is never handed out again
  free_mapping_slots_.push_back(static_cast<uint32_t>(index));
  if (free_mapping_slots_.size() == mapping_slots_.size() &&
      mapping_slots_.size() > kSlotsKeptIdle) {
    ReleaseMappingSlotsLocked();  // nothing is mapped any more
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

Service::MappingRef Service::RefLocked(MappingId id, const MappingSlot& slot) const {
  MappingRef ref{id, slot.engine_id, slot.owner_uid, {}, containers_.at(slot.container).managed};
  if (auto name = mapping_names_.find(id); name != mapping_names_.end()) {
    ref.name = name->second;
  }
  return ref;
}

Result<MappingView> Service::Describe(const MappingRef& ref) {
  MappingView view = VFIOD_TRY(ref.managed->Describe(ref.engine_id));
  view.id = ref.id;
  view.owner_uid = ref.owner_uid;
  view.name = ref.name;
  return view;
}

std::vector<MappingView> Service::DescribeAll(const std::vector<MappingRef>& refs) {
  std::vector<MappingView> out;
  out.reserve(refs.size());
  for (const MappingRef& ref : refs) {
    std::lock_guard clock(ref.managed->mu());
    if (auto view = Describe(ref)) {  // else freed meanwhile
      out.push_back(std::move(*view));
    }
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.id < b.id; });
  return out;
}

std::vector<Service::MappingRef> Service::VisibleMappingsLocked(
    const Caller& caller, std::optional<ContainerId> container) const {
  std::vector<MappingRef> out;
  ForEachMappingLocked([&](MappingId id, const MappingSlot& slot) {
    if ((!container || slot.container == *container) &&
        Authorize(caller, slot, Access::kSee, "dma.list")) {
      out.push_back(RefLocked(id, slot));
    }
  });
  return out;
}

}  // namespace vfiod::service
