#include <gtest/gtest.h>

#include <optional>
#include <string>

#include "service/config.h"

namespace vfiod::service {
namespace {

TEST(ParseSizeTest, AcceptsPlainNumbersAndBinarySuffixes) {
  EXPECT_EQ(ParseSize("0"), 0u);
  EXPECT_EQ(ParseSize("4096"), 4096u);
  EXPECT_EQ(ParseSize("4K"), 4096u);
  EXPECT_EQ(ParseSize("4k"), 4096u);
  EXPECT_EQ(ParseSize("512M"), 512ULL << 20);
  EXPECT_EQ(ParseSize("1G"), 1ULL << 30);
  EXPECT_EQ(ParseSize("3T"), 3ULL << 40);
  EXPECT_EQ(ParseSize("18446744073709551615"), UINT64_MAX);
  EXPECT_EQ(ParseSize("16777215T"), 16777215ULL << 40);
}

TEST(ParseSizeTest, RefusesMalformedAndOverflowingSizes) {
  for (const char* bad : {"", "K", "-1", "+1", "1.5G", "1 G", "1GB", "1GiB", "0x10", "12X",
                          "18446744073709551616", "16777216T", "99999999999999999999G"}) {
    EXPECT_EQ(ParseSize(bad), std::nullopt) << bad;
  }
}

TEST(CanonicalBdfTest, LowerCasesValidAddresses) {
  EXPECT_EQ(CanonicalBdf("0000:00:03.0"), "0000:00:03.0");
  EXPECT_EQ(CanonicalBdf("ABCD:EF:1F.7"), "abcd:ef:1f.7");
}

TEST(CanonicalBdfTest, RefusesOutOfRangeOrMisshapenAddresses) {
  for (const char* bad :
       {"", "00:03.0", "0000:00:03", "0000:00:20.0", "0000:00:03.8", "0000-00:03.0", "0000:00:03:0",
        "000g:00:03.0", "0000:00:03.0\n", " 0000:00:03.0", "00000:00:03.0"}) {
    EXPECT_EQ(CanonicalBdf(bad), std::nullopt) << bad;
  }
}

TEST(EnumNamesTest, MatchTheSpellingInTheFile) {
  EXPECT_EQ(KernelKindName(KernelKind::kLinux), "linux");
  EXPECT_EQ(KernelKindName(KernelKind::kModel), "model");
  EXPECT_EQ(LogLevelName(LogLevel::kWarn), "warn");
  EXPECT_EQ(LogLevelName(LogLevel::kOff), "off");
  EXPECT_EQ(LogTargetName(LogTarget::kJournal), "journal");
}

}  // namespace
}  // namespace vfiod::service
