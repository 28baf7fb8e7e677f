#include "kernel/cap_chain.h"

#include <gtest/gtest.h>

#include <cstring>
#include <vector>

namespace vfiod::kernel {
namespace {

uint32_t NextOf(const std::vector<std::byte>& b, size_t at) {
  uint32_t v = 0;
  std::memcpy(&v, b.data() + at + 4, 4);
  return v;
}

TEST(CapChain, PacksLikeLinux61AndShiftsOffsets) {
  CapChainBuilder caps;
  std::vector<std::byte> body4(4, std::byte{0xaa});
  std::vector<std::byte> body8(8, std::byte{0xbb});
  caps.Add(2, 1, body4);  // 12 bytes: the next one starts unpadded at 12
  caps.Add(1, 1, body8);
  EXPECT_EQ(caps.size(), 12u + 16u);
  std::vector<std::byte> chain = caps.Shifted(24);
  EXPECT_EQ(NextOf(chain, 0), 24u + 12u);
  EXPECT_EQ(NextOf(chain, 12), 0u);

  std::vector<std::byte> reply(24 + chain.size());
  std::memcpy(reply.data() + 24, chain.data(), chain.size());
  std::vector<std::pair<uint16_t, uint32_t>> seen;
  ASSERT_TRUE(WalkCapChain(reply, 24, [&](const CapView& c) {
    seen.emplace_back(c.id, c.offset);
    return Result<void>();
  }));
  EXPECT_EQ(seen, (std::vector<std::pair<uint16_t, uint32_t>>{{2, 24}, {1, 36}}));
}

TEST(CapChain, RejectsLoopsAndOutOfBoundsHeaders) {
  std::vector<std::byte> reply(32);
  uint32_t self = 16;
  std::memcpy(reply.data() + 16 + 4, &self, 4);  // points at itself
  auto visit = [](const CapView&) { return Result<void>(); };
  EXPECT_EQ(WalkCapChain(reply, 16, visit).error().code, EPROTO);
  EXPECT_EQ(WalkCapChain(reply, 28, visit).error().code, EPROTO);  // header crosses the end
  EXPECT_EQ(WalkCapChain(reply, 400, visit).error().code, EPROTO);
  EXPECT_TRUE(WalkCapChain(reply, 0, visit));  // no chain
}

}  // namespace
}  // namespace vfiod::kernel
