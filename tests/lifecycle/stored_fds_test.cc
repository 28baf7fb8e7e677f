// SortStoredFds: what the record describes, what it does not, what is missing.
#include "lifecycle/stored_fds.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include "lifecycle/fd_name.h"

namespace vfiod::lifecycle {
namespace {

NamedFd Named(std::string name) {
  return {std::move(name), UniqueFd(::open("/dev/null", O_RDONLY | O_CLOEXEC))};
}

StateRecord Record() {
  StateRecord r;
  ContainerRecord c;
  c.id = 5;
  c.groups = {3, 4};
  c.fd_name = "c-5";
  c.devices = {{"0000:00:03.0", 3, "d-5-0000_00_03.0"}, {"0000:00:04.0", 4, "d-5-0000_00_04.0"}};
  r.containers.push_back(c);
  MappingRecord m;
  m.id = 9;
  m.container = 5;
  m.size = 4096;
  m.fd_name = "m-9";
  r.mappings.push_back(m);
  MappingRecord bar;
  bar.id = 10;
  bar.container = 5;
  bar.size = 4096;
  bar.mmio = true;
  r.mappings.push_back(bar);
  return r;
}

TEST(StoredFds, NamesOfObjects) {
  EXPECT_TRUE(IsStoredObjectName("c-1"));
  EXPECT_TRUE(IsStoredObjectName("g-1-3"));
  EXPECT_TRUE(IsStoredObjectName("d-1-0000_00_03.0"));
  EXPECT_TRUE(IsStoredObjectName("m-7"));
  EXPECT_TRUE(IsStoredObjectName("r-m-7"));  // an own record: never the socket
  EXPECT_TRUE(IsStoredObjectName("rg-4"));   // a registered region's file
  EXPECT_TRUE(IsStoredObjectName("vfiod-state-1"));
  EXPECT_FALSE(IsStoredObjectName("unknown"));
  EXPECT_FALSE(IsStoredObjectName("vfiod.socket"));
  EXPECT_EQ(GroupFdName(5, 3), "g-5-3");
  // A bdf's ':' cannot be in an FDNAME (LISTEN_FDNAMES separates with it).
  EXPECT_EQ(DeviceFdName(5, "0000:00:03.0"), "d-5-0000_00_03.0");
  EXPECT_TRUE(IsValidFdName(DeviceFdName(5, "0000:00:03.0")));
}

TEST(StoredFds, SortsDescribedStraysMissingAndTheSocket) {
  StateRecord record = Record();
  std::vector<NamedFd> fds;
  fds.push_back(Named("c-5"));
  fds.push_back(Named("g-5-3"));
  fds.push_back(Named("d-5-0000_00_03.0"));
  fds.push_back(Named("d-5-0000_00_07.0"));  // opened, then the daemon died before the record
  fds.push_back(Named("unknown"));           // the socket
  fds.push_back(Named("m-11"));              // stored, then the daemon died before the record
  fds.push_back(Named("c-5"));               // twice: the second is a stray
  fds.push_back(Named("vfiod-state-0"));
  fds.push_back(Named("unknown"));  // a second socket
  SortedFds sorted = SortStoredFds(&record, std::move(fds));
  ASSERT_TRUE(sorted.socket);
  EXPECT_TRUE(sorted.socket->valid());
  EXPECT_EQ(sorted.described.size(), 3u);
  EXPECT_TRUE(sorted.described.contains("c-5"));
  EXPECT_TRUE(sorted.described.contains("g-5-3"));
  EXPECT_TRUE(sorted.described.contains("d-5-0000_00_03.0"));
  std::vector<std::string> strays;
  for (const NamedFd& s : sorted.strays) {
    strays.push_back(s.name);
  }
  EXPECT_EQ(strays, (std::vector<std::string>{"d-5-0000_00_07.0", "m-11", "c-5", "vfiod-state-0",
                                              "unknown"}));
  EXPECT_EQ(sorted.missing, (std::vector<std::string>{"d-5-0000_00_04.0", "g-5-4", "m-9"}));
}

TEST(StoredFds, WithoutARecordEveryStoredObjectIsAStray) {
  std::vector<NamedFd> fds;
  fds.push_back(Named("c-5"));
  fds.push_back(Named("m-9"));
  SortedFds sorted = SortStoredFds(nullptr, std::move(fds));
  EXPECT_TRUE(sorted.described.empty());
  EXPECT_EQ(sorted.strays.size(), 2u);
  EXPECT_TRUE(sorted.missing.empty());
  EXPECT_FALSE(sorted.socket);
}

}  // namespace
}  // namespace vfiod::lifecycle
