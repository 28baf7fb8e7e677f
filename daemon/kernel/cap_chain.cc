#include "kernel/cap_chain.h"

#include <cerrno>
#include <cstring>

namespace vfiod::kernel {
namespace {

void PutU32(std::byte* dst, uint32_t v) { std::memcpy(dst, &v, sizeof v); }

}  // namespace

void CapChainBuilder::Add(uint16_t id, uint16_t version, std::span<const std::byte> body) {
  size_t start = buf_.size();
  buf_.resize(start + kCapHeaderSize + body.size());
  std::byte* h = buf_.data() + start;
  std::memcpy(h, &id, sizeof id);
  std::memcpy(h + 2, &version, sizeof version);
  PutU32(h + 4, 0);
  if (!body.empty()) {
    std::memcpy(h + kCapHeaderSize, body.data(), body.size());
  }
  if (!starts_.empty()) {
    PutU32(buf_.data() + starts_.back() + 4, static_cast<uint32_t>(start));
  }
  starts_.push_back(start);
}

std::vector<std::byte> CapChainBuilder::Shifted(uint32_t base) const {
  std::vector<std::byte> out = buf_;
  for (size_t i = 0; i + 1 < starts_.size(); ++i) {
    PutU32(out.data() + starts_[i] + 4, static_cast<uint32_t>(starts_[i + 1] + base));
  }
  return out;
}

void CapChainBuilder::PlaceBehind(void* reply, size_t fixed_size, uint32_t& argsz,
                                  uint32_t& cap_offset) const {
  const size_t needed = fixed_size + buf_.size();
  if (argsz < needed) {
    argsz = static_cast<uint32_t>(needed);
    return;
  }
  const std::vector<std::byte> chain = Shifted(static_cast<uint32_t>(fixed_size));
  std::memcpy(static_cast<std::byte*>(reply) + fixed_size, chain.data(), chain.size());
  cap_offset = static_cast<uint32_t>(fixed_size);
}

Result<void> WalkCapChain(std::span<const std::byte> reply, uint32_t first,
                          const std::function<Result<void>(const CapView&)>& visit) {
  uint32_t offset = first;
  while (offset != 0) {
    if (offset > reply.size() || reply.size() - offset < kCapHeaderSize) {
      return Fail(EPROTO, "capability chain", "header outside the reply");
    }
    CapView cap;
    const std::byte* h = reply.data() + offset;
    std::memcpy(&cap.id, h, sizeof cap.id);
    std::memcpy(&cap.version, h + 2, sizeof cap.version);
    uint32_t next = 0;
    std::memcpy(&next, h + 4, sizeof next);
    cap.offset = offset;
    cap.data = reply.subspan(offset);
    VFIOD_TRY(visit(cap));
    if (next != 0 && next <= offset) {
      return Fail(EPROTO, "capability chain", "next offset does not move forward");
    }
    offset = next;
  }
  return Ok();
}

}  // namespace vfiod::kernel
