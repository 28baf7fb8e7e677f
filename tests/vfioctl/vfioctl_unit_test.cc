// vfioctl's pure helpers: size parsing and formatting, exit codes for daemon
// errors, tables.
#include <gtest/gtest.h>

#include <sstream>

#include "vfioctl/exit_codes.h"
#include "vfioctl/format.h"
#include "vfioctl/progress.h"
#include "vfioctl/sizes.h"
#include "vfioctl/table.h"

namespace vfiod::vfioctl {
namespace {

TEST(ParseSize, AcceptsDecimalHexAndBinarySuffixes) {
  EXPECT_EQ(ParseSize("4096"), 4096u);
  EXPECT_EQ(ParseSize("2M"), 2u << 20);
  EXPECT_EQ(ParseSize("2m"), 2u << 20);
  EXPECT_EQ(ParseSize("1G"), 1ull << 30);
  EXPECT_EQ(ParseSize("1GiB"), 1ull << 30);
  EXPECT_EQ(ParseSize("3MB"), 3ull << 20);
  EXPECT_EQ(ParseSize("4k"), 4096u);
  EXPECT_EQ(ParseSize("2T"), 2ull << 40);
  EXPECT_EQ(ParseSize("512B"), 512u);
  EXPECT_EQ(ParseSize("0x100000"), 0x100000u);
  EXPECT_EQ(ParseSize("0xfffb"), 0xfffbu);  // 'b' is a hex digit, not "bytes"
  EXPECT_EQ(ParseSize("0"), 0u);
  EXPECT_EQ(ParseSize("18446744073709551615"), UINT64_MAX);
}

TEST(ParseSize, RefusesMalformedAndOverflowingText) {
  for (const char* bad : {"", "M", "2X", "-1", "1.5G", "0x", "2 M", "G2", "b", "iB", "0xg",
                          "18446744073709551616", "16777216T"}) {
    EXPECT_EQ(ParseSize(bad), std::nullopt) << bad;
  }
}

TEST(FormatSize, PicksTheLargestUnitAndIsExactWhenItDivides) {
  EXPECT_EQ(FormatSize(0), "0 B");
  EXPECT_EQ(FormatSize(512), "512 B");
  EXPECT_EQ(FormatSize(4096), "4 KiB");
  EXPECT_EQ(FormatSize(2u << 20), "2 MiB");
  EXPECT_EQ(FormatSize(3ull << 29), "1.50 GiB");
  EXPECT_EQ(FormatSize(1ull << 40), "1 TiB");
  EXPECT_EQ(Hex(0x100000), "0x100000");
}

TEST(PageSizes, NamesEachBitOfTheBitmap) {
  EXPECT_EQ(PageSizes(0x40201000), "4K, 2M, 1G");
  EXPECT_EQ(PageSizes(0), "-");
}

TEST(ExitFor, MapsErrorClassesToTheDocumentedCodes) {
  auto code = [](int rpc) { return static_cast<int>(ExitFor(wire::MakeError(rpc))); };
  EXPECT_EQ(code(wire::kClientTransport), 2);
  EXPECT_EQ(code(wire::kPermissionDenied), 3);
  EXPECT_EQ(code(wire::kQuotaExceeded), 3);
  EXPECT_EQ(code(wire::kNotFound), 4);
  EXPECT_EQ(code(wire::kKernelError), 4);
  EXPECT_EQ(code(wire::kBusy), 4);
  EXPECT_EQ(code(wire::kMethodNotFound), 4);
  EXPECT_EQ(code(wire::kClientProtocol), 4);
  EXPECT_EQ(code(wire::kClientTimeout), 5);
  EXPECT_EQ(code(wire::kInvalidParams), 1);
}

TEST(FailureFor, IsOneLineNamingMethodDetailAndErrno) {
  auto err = wire::MakeError(Error{EBUSY, "container", "group 3 is in use"}, wire::kBusy);
  Failure f = FailureFor("container.create", err);
  EXPECT_EQ(f.exit, Exit::kRpcError);
  EXPECT_NE(f.message.find("container.create: "), std::string::npos) << f.message;
  EXPECT_NE(f.message.find("group 3 is in use"), std::string::npos) << f.message;
  EXPECT_NE(f.message.find("(EBUSY)"), std::string::npos) << f.message;
  EXPECT_EQ(f.message.find('\n'), std::string::npos) << f.message;
}

TEST(Table, AlignsColumnsWithoutTrailingBlanks) {
  Table t({"ID", "NAME", "SIZE"});
  t.AddRow({"1", "demo", "2 MiB"});
  t.AddRow({"12", "", "4 KiB"});
  t.AddRow({"3"});  // missing cells print empty
  std::ostringstream out;
  t.Print(out);
  EXPECT_EQ(out.str(),
            "ID  NAME  SIZE\n"
            "1   demo  2 MiB\n"
            "12        4 KiB\n"
            "3\n");
}

TEST(Format, TextOfEveryJsonKind) {
  using nlohmann::json;
  json j = {{"s", "x"}, {"n", 7}, {"b", true}, {"z", nullptr}, {"a", {1, 2}}, {"e", json::array()}};
  EXPECT_EQ(Field(j, "s"), "x");
  EXPECT_EQ(Field(j, "n"), "7");
  EXPECT_EQ(Field(j, "b"), "yes");
  EXPECT_EQ(Field(j, "z"), "-");
  EXPECT_EQ(Field(j, "a"), "1,2");
  EXPECT_EQ(Field(j, "e"), "-");
  EXPECT_EQ(Field(j, "missing"), "-");
  EXPECT_EQ(SizeField(json{{"size", 2097152}}, "size"), "2 MiB");
  EXPECT_EQ(HexField(json{{"iova", 4096}}, "iova"), "0x1000");
  EXPECT_TRUE(Member(j, "missing").is_null());
  EXPECT_TRUE(Member(json(5), "x").is_null());
}

TEST(ProgressBar, DisabledDrawsNothing) {
  ::testing::internal::CaptureStderr();
  {
    ProgressBar bar(false);
    bar.Update(1, 2);
    bar.Update(2, 2);
  }
  EXPECT_EQ(::testing::internal::GetCapturedStderr(), "");
}

}  // namespace
}  // namespace vfiod::vfioctl
