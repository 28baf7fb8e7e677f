// VFIO capability chains (struct vfio_info_cap_header: u16 id, u16 version,
// u32 next), as found after the fixed part of a GET_INFO reply.
//
// CapChainBuilder lays a chain out the way Linux 6.1's vfio_info_cap_add()
// and vfio_info_cap_shift() do: capabilities packed back to back in the order
// added (6.1 does not pad them to 8 bytes), `next` offsets relative to the
// start of the whole reply, 0 ending the chain. WalkCapChain() is the reader:
// it trusts nothing in the buffer.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "proto/result.h"

namespace vfiod::kernel {

inline constexpr size_t kCapHeaderSize = 8;

class CapChainBuilder {
 public:
  /// Appends one capability: the header (with `id`, `version`) followed by
  /// `body` (the struct's bytes after its header).
  void Add(uint16_t id, uint16_t version, std::span<const std::byte> body);
  /// Bytes of the chain.
  [[nodiscard]] size_t size() const { return buf_.size(); }
  /// The chain as it sits at offset `base` of the reply (every `next` shifted).
  [[nodiscard]] std::vector<std::byte> Shifted(uint32_t base) const;
  /// Puts the chain behind the fixed part (`fixed_size` bytes) of the GET_INFO
  /// reply at `reply`, as vfio's GET_INFO handlers do: when `argsz` is too
  /// small for both, raises it to the size needed and writes no chain (the
  /// caller asks again); otherwise copies the chain to `reply + fixed_size`
  /// and sets `cap_offset` to `fixed_size`. Writes no fixed field but these.
  void PlaceBehind(void* reply, size_t fixed_size, uint32_t& argsz, uint32_t& cap_offset) const;

 private:
  std::vector<std::byte> buf_;
  std::vector<size_t> starts_;  // offset of each header within buf_
};

/// The bytes of `v`.
template <class T>
std::span<const std::byte> ObjectBytes(const T& v) {
  return std::as_bytes(std::span<const T>(&v, 1));
}

/// The bytes of a capability struct after its header (what Add() takes).
template <class T>
std::span<const std::byte> CapBody(const T& v) {
  return ObjectBytes(v).subspan(kCapHeaderSize);
}

/// One capability found by WalkCapChain: `data` spans from its header to the
/// end of the reply buffer (a capability's length is implied by its id).
struct CapView {
  uint16_t id = 0;
  uint16_t version = 0;
  uint32_t offset = 0;
  std::span<const std::byte> data;
};

/// Visits the chain starting at `first` (an offset into `reply`). EPROTO when
/// a header lies outside the buffer or the chain does not move forward.
[[nodiscard]] Result<void> WalkCapChain(std::span<const std::byte> reply, uint32_t first,
                                        const std::function<Result<void>(const CapView&)>& visit);

}  // namespace vfiod::kernel
