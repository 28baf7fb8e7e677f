// MergeObjectRecords: objects newer than the state record come back from
// their own records; nothing is taken that does not describe exactly the
// object its name names, and the state record wins where both describe one.
#include "lifecycle/object_record.h"

#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include "lifecycle/sealed_memfd.h"

namespace vfiod::lifecycle {
namespace {

ContainerRecord Container(uint64_t id, std::string name = "ring") {
  ContainerRecord c;
  c.id = id;
  c.name = std::move(name);
  c.owner_uid = 1000;
  c.groups = {7};
  c.fd_name = "c-" + std::to_string(id);
  return c;
}

MappingRecord Mapping(uint64_t id, uint64_t container, uint64_t iova) {
  MappingRecord m;
  m.id = id;
  m.container = container;
  m.iova = iova;
  m.size = 1 << 20;
  m.backing = "4k";
  m.fd_name = "m-" + std::to_string(id);
  m.owner_uid = 1000;
  m.name = "buf" + std::to_string(id);
  m.entries = {{iova, 1 << 20, 0}};
  return m;
}

/// The own record of container `c`, as StoreContainerFd stores it.
NamedFd OwnContainer(const ContainerRecord& c) {
  StateRecord own;
  own.next_id = c.id + 1;
  own.mapping_generation = 1;
  own.containers = {c};
  auto fd = SealRecord(own);
  EXPECT_TRUE(fd) << fd.error().message();
  return {ObjectRecordName(c.fd_name), std::move(*fd)};
}

/// The own record of mapping `m` of container `c`, as StoreMappingFd stores it.
NamedFd OwnMapping(const ContainerRecord& c, const MappingRecord& m) {
  StateRecord own;
  own.next_id = c.id + 1;
  own.mapping_generation = static_cast<uint32_t>(m.id >> 32) + 1;
  own.containers = {c};
  own.mappings = {m};
  auto fd = SealRecord(own);
  EXPECT_TRUE(fd) << fd.error().message();
  return {ObjectRecordName(m.fd_name), std::move(*fd)};
}

constexpr uint64_t kMapping = (1ULL << 32) | 1;  // generation 1, slot 0
constexpr uint64_t kLater = (3ULL << 32) | 2;    // generation 3, slot 1

TEST(ObjectRecord, Names) {
  EXPECT_EQ(ObjectRecordName("c-5"), "r-c-5");
  EXPECT_TRUE(IsObjectRecordName("r-m-4294967297"));
  EXPECT_FALSE(IsObjectRecordName("r-g-5-3"));  // groups have none: their container's says it
  EXPECT_FALSE(IsObjectRecordName("m-1"));
  EXPECT_EQ(ObjectOfRecordName("r-c-5"), "c-5");
  EXPECT_EQ(ObjectOfRecordName("vfiod-state-0"), "");
}

TEST(ObjectRecord, ObjectsNewerThanTheStateRecordAreAdded) {
  StateRecord state;
  state.generation = 4;
  state.next_id = 6;
  state.mapping_generation = 2;
  state.containers = {Container(5)};
  state.mappings = {Mapping(kMapping, 5, 0x100000)};
  std::optional<StateRecord> record = state;
  std::vector<NamedFd> fds;
  const ContainerRecord late = Container(8, "");
  ContainerRecord unnamed = late;
  unnamed.session = std::string(kSessionTokenLength, 'a');
  fds.push_back(OwnContainer(unnamed));
  fds.push_back(OwnMapping(Container(5), Mapping(kLater, 5, 0x200000)));  // in an old container
  MergeReport report = MergeObjectRecords(record, fds);
  EXPECT_TRUE(report.refused.empty()) << report.refused[0];
  EXPECT_EQ(report.containers, 1u);
  EXPECT_EQ(report.mappings, 1u);
  ASSERT_TRUE(record);
  EXPECT_EQ(record->generation, 4u);  // still the state record's: the writer goes on after it
  ASSERT_EQ(record->containers.size(), 2u);
  EXPECT_EQ(record->containers[1], unnamed);
  ASSERT_EQ(record->mappings.size(), 2u);
  EXPECT_EQ(record->mappings[1].id, kLater);
  EXPECT_EQ(record->next_id, 9u);             // past the new container
  EXPECT_EQ(record->mapping_generation, 4u);  // past the new mapping
}

TEST(ObjectRecord, WithoutAStateRecordTheOwnRecordsMakeOne) {
  std::optional<StateRecord> record;
  std::vector<NamedFd> fds;
  fds.push_back(OwnMapping(Container(3), Mapping(kMapping, 3, 0x100000)));  // before its container
  fds.push_back(OwnContainer(Container(3)));
  MergeReport report = MergeObjectRecords(record, fds);
  EXPECT_TRUE(report.refused.empty());
  ASSERT_TRUE(record);
  EXPECT_EQ(record->generation, 0u);
  EXPECT_EQ(record->containers.size(), 1u);
  EXPECT_EQ(record->mappings.size(), 1u);
}

TEST(ObjectRecord, TheStateRecordWinsWhereBothDescribeAnObject) {
  StateRecord state;
  state.next_id = 6;
  state.mapping_generation = 2;
  ContainerRecord shared = Container(5);
  shared.shared_users = {1001};  // shared after it was created: only the state record knows
  state.containers = {shared};
  std::optional<StateRecord> record = state;
  std::vector<NamedFd> fds;
  fds.push_back(OwnContainer(Container(5)));
  MergeReport report = MergeObjectRecords(record, fds);
  EXPECT_EQ(report.containers, 0u);
  EXPECT_TRUE(report.refused.empty());  // superseded, not refused
  EXPECT_EQ(record, std::optional<StateRecord>(state));
}

TEST(ObjectRecord, WhatDoesNotDescribeItsObjectAloneIsRefused) {
  std::optional<StateRecord> record;
  std::vector<NamedFd> fds;
  NamedFd wrong = OwnContainer(Container(3));
  wrong.name = "r-c-4";  // names another container than it describes
  fds.push_back(std::move(wrong));
  fds.push_back(OwnMapping(Container(9), Mapping(kMapping, 9, 0)));  // its container is nowhere
  // A memfd that is not sealed could change under vfiod: never read.
  int raw = ::memfd_create("forged", MFD_CLOEXEC);
  ASSERT_GE(raw, 0);
  UniqueFd unsealed(raw);
  const std::string text = "{}";
  ASSERT_EQ(::write(unsealed.get(), text.data(), text.size()), 2);
  fds.push_back({"r-c-6", std::move(unsealed)});
  auto garbage = WriteSealedMemfd("garbage", "not a record");
  ASSERT_TRUE(garbage);
  fds.push_back({"r-m-7", std::move(*garbage)});
  MergeReport report = MergeObjectRecords(record, fds);
  EXPECT_EQ(report.refused.size(), 4u);
  EXPECT_EQ(report.containers + report.mappings, 0u);
  EXPECT_FALSE(record);
}

TEST(ObjectRecord, AMergeThatBreaksTheRecordsRulesLeavesTheStateRecordAlone) {
  StateRecord state;
  state.next_id = 7;
  state.mapping_generation = 2;
  ContainerRecord odd = Container(6);
  odd.fd_name = "c-5";  // a record may name fds freely, as long as no name repeats
  state.containers = {odd};
  ASSERT_TRUE(DecodeStateRecord(EncodeStateRecord(state)));
  std::optional<StateRecord> record = state;
  std::vector<NamedFd> fds;
  fds.push_back(OwnContainer(Container(5)));  // fine alone, but repeats "c-5"
  MergeReport report = MergeObjectRecords(record, fds);
  ASSERT_EQ(report.refused.size(), 1u);
  EXPECT_NE(report.refused[0].find("not merged"), std::string::npos) << report.refused[0];
  EXPECT_EQ(report.containers, 0u);
  EXPECT_EQ(record, std::optional<StateRecord>(state));
}

}  // namespace
}  // namespace vfiod::lifecycle
