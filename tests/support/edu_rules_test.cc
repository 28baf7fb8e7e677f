// The edu driver's argument rules, which keep QEMU's edu quirks from turning
// a test bug into a hardware error (or a silently clamped DMA address).
#include <gtest/gtest.h>

#include "support/edu.h"

namespace vfiod::testing {
namespace {

TEST(EduRules, AcceptsTransfersInsideTheBufferAndTheDmaMask) {
  EXPECT_TRUE(CheckEduTransfer(0x100000, 0, 2048).has_value());
  EXPECT_TRUE(CheckEduTransfer(0, 0, kEduMaxTransfer).has_value());
  EXPECT_TRUE(CheckEduTransfer(kEduDmaLimit - 4096, 4000, 94).has_value());
}

TEST(EduRules, RefusesTransfersReachingTheLastBufferByte) {
  EXPECT_EQ(CheckEduTransfer(0x100000, 0, kEduBufferSize).error().code, EINVAL);
  EXPECT_EQ(CheckEduTransfer(0x100000, 1, kEduMaxTransfer).error().code, EINVAL);
  EXPECT_EQ(CheckEduTransfer(0x100000, kEduBufferSize, 1).error().code, EINVAL);
  EXPECT_EQ(CheckEduTransfer(0x100000, 0, 0).error().code, EINVAL);
}

TEST(EduRules, RefusesIovasBeyondTheTwentyEightBitMask) {
  EXPECT_EQ(CheckEduTransfer(kEduDmaLimit, 0, 16).error().code, EINVAL);
  EXPECT_EQ(CheckEduTransfer(kEduDmaLimit - 8, 0, 16).error().code, EINVAL);
  EXPECT_EQ(CheckEduTransfer(~uint64_t{0} - 4, 0, 16).error().code, EINVAL);
}

}  // namespace
}  // namespace vfiod::testing
