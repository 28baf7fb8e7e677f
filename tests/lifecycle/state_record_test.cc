// The state record: encode/decode, strict rejection, the sealed memfd it lives
// in, and its replacement in the fd store across real restarts.
#include "lifecycle/state_record.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <nlohmann/json.hpp>
#include <string>

#include "fd_store_supervisor.h"
#include "lifecycle/notify.h"
#include "lifecycle/record_store.h"
#include "lifecycle/sealed_memfd.h"

namespace vfiod::lifecycle {
namespace {

ContainerRecord Container(uint64_t id, uid_t owner, std::string name) {
  ContainerRecord c;
  c.id = id;
  c.owner_uid = owner;
  c.name = std::move(name);
  c.fd_name = "c-" + std::to_string(id);
  c.session = c.name.empty() ? std::string(kSessionTokenLength, 'a') : "";
  return c;
}

MappingRecord Mapping(uint64_t id, uint64_t container, uint64_t iova, uint64_t size,
                      std::string backing, uid_t owner) {
  MappingRecord m;
  m.id = id;
  m.container = container;
  m.iova = iova;
  m.size = size;
  m.mmio = backing == "bar";
  m.fd_name = m.mmio ? "" : "m-" + std::to_string(id);
  m.backing = std::move(backing);
  m.owner_uid = owner;
  m.session = std::string(kSessionTokenLength, 'b');  // unnamed until a test names it
  return m;
}

OwnerRecord Owner(uid_t uid, uint64_t locked_bytes, uint64_t mappings, uint64_t containers) {
  OwnerRecord o;
  o.uid = uid;
  o.locked_bytes = locked_bytes;
  o.mappings = mappings;
  o.containers = containers;
  return o;
}

StateRecord Sample() {
  StateRecord r;
  r.generation = 41;
  r.next_id = 9;
  r.mapping_generation = 2;
  r.containers.push_back(Container(3, 1000, "ring"));
  r.containers[0].shared_users = {1001, 1002};
  r.containers[0].shared_groups = {50};
  r.containers[0].groups = {12, 14};
  r.containers[0].devices = {{"0000:00:05.0", 14, "d-3-0000_00_05.0"},
                             {"0000:00:03.0", 12, "d-3-0000_00_03.0"}};
  r.containers.push_back(Container(8, 1001, ""));
  r.mappings.push_back(Mapping((1ULL << 32) | 1, 3, 0x100000000ULL, 2u << 20, "hugetlb-2m", 1000));
  r.mappings[0].name = "kbuf";
  r.mappings[0].session.clear();
  r.mappings[0].entries = {{0x100000000ULL, 1u << 20, 0}, {0x100100000ULL, 1u << 20, 1u << 20}};
  r.mappings.push_back(Mapping(2, 8, 0xfffff000ULL, 4096, "bar", 1001));
  r.mappings[1].entries = {{0xfffff000ULL, 4096, 0x2000}};
  r.mappings[1].bar_bdf = "0000:00:05.0";
  r.mappings[1].bar_index = 2;
  RegionRecord region;
  region.id = 5;
  region.owner_uid = 1000;
  region.session = std::string(kSessionTokenLength, 'c');
  region.fd_name = "rg-5";
  region.offset = 2u << 20;
  region.size = 4u << 20;
  region.charged = true;
  r.regions.push_back(region);
  r.mappings.push_back(Mapping((1ULL << 32) | 3, 3, 0x200000000ULL, 2u << 20, "hugetlb-2m", 1000));
  r.mappings[2].fd_name.clear();  // a slice of region 5: its memory is the region's
  r.mappings[2].region = 5;
  r.mappings[2].entries = {{0x200000000ULL, 2u << 20, 4u << 20}};
  r.owners.push_back(Owner(1000, 2u << 20, 1, 1));
  r.owners.push_back(Owner(1001, 0, 1, 1));
  return r;
}

/// Re-encodes `doc` with a correct checksum, so only the change is wrong.
std::string Resealed(nlohmann::json doc) {
  doc.erase("checksum");
  uint64_t hash = 0xcbf29ce484222325ULL;
  for (unsigned char c : doc.dump()) {
    hash = (hash ^ c) * 0x100000001b3ULL;
  }
  char buf[17];
  (void)std::snprintf(buf, sizeof(buf), "%016llx", static_cast<unsigned long long>(hash));
  doc["checksum"] = buf;
  return doc.dump();
}

TEST(StateRecord, RoundTripsExactly) {
  const StateRecord r = Sample();
  const std::string bytes = EncodeStateRecord(r);
  auto back = DecodeStateRecord(bytes);
  ASSERT_TRUE(back) << back.error().message();
  EXPECT_EQ(*back, r);
  EXPECT_EQ(EncodeStateRecord(*back), bytes);  // deterministic
  EXPECT_TRUE(DecodeStateRecord(EncodeStateRecord(StateRecord{})));
}

// A producer that does not know a mapping's entries yet lists none; the
// record still decodes (re-adoption then releases that mapping).
TEST(StateRecord, AMappingWithoutEntriesDecodes) {
  StateRecord r = Sample();
  r.mappings[0].entries.clear();
  auto back = DecodeStateRecord(EncodeStateRecord(r));
  ASSERT_TRUE(back) << back.error().message();
  EXPECT_EQ(*back, r);
}

// The record of the vfiod before (version 3: BARs without their device) is
// still read, so an upgrade keeps everything but those BARs.
TEST(StateRecord, AVersion3RecordStillDecodes) {
  nlohmann::json doc = nlohmann::json::parse(EncodeStateRecord(Sample()));
  doc["version"] = 3;
  doc.erase("regions");
  for (auto& c : doc["containers"]) {
    c.erase("devices");
  }
  doc["mappings"].erase(2);  // a region's slice: version 3 had none
  for (auto& m : doc["mappings"]) {
    m.erase("bar");
    m.erase("region");
  }
  auto back = DecodeStateRecord(Resealed(doc));
  ASSERT_TRUE(back) << back.error().message();
  StateRecord want = Sample();
  want.regions.clear();
  want.mappings.pop_back();
  want.mappings[1].bar_bdf.clear();
  want.mappings[1].bar_index = 0;
  want.containers[0].devices.clear();
  EXPECT_EQ(*back, want);  // read as this build's version, the BAR's device unknown
}

// The record of the vfiod before (version 4: no device fds in the store) is
// still read: the containers come back without devices, which the next
// vfiod opens again when asked.
TEST(StateRecord, AVersion4RecordStillDecodes) {
  nlohmann::json doc = nlohmann::json::parse(EncodeStateRecord(Sample()));
  doc["version"] = 4;
  for (auto& c : doc["containers"]) {
    c.erase("devices");
  }
  auto back = DecodeStateRecord(Resealed(doc));
  ASSERT_TRUE(back) << back.error().message();
  StateRecord want = Sample();
  want.containers[0].devices.clear();
  EXPECT_EQ(*back, want);
}

TEST(StateRecord, TheResealHelperAgreesWithTheEncoder) {
  // Resealed() must produce exactly what the encoder does, or the rejection
  // tests below would pass for the wrong reason (a checksum mismatch).
  const std::string bytes = EncodeStateRecord(Sample());
  EXPECT_EQ(Resealed(nlohmann::json::parse(bytes)), bytes);
}

TEST(StateRecord, AnyFlippedByteIsRefused) {
  const std::string bytes = EncodeStateRecord(Sample());
  int refused = 0;
  for (size_t i = 0; i < bytes.size(); i += 7) {
    std::string bad = bytes;
    bad[i] = bad[i] == '1' ? '2' : '1';
    auto r = DecodeStateRecord(bad);
    refused += r ? 0 : 1;
    if (!r) {
      EXPECT_EQ(r.error().code, EINVAL);
    }
  }
  EXPECT_EQ(refused, static_cast<int>((bytes.size() + 6) / 7));
}

struct Corruption {
  const char* what;
  void (*edit)(nlohmann::json&);
};

TEST(StateRecord, StrictValidationEvenWithAGoodChecksum) {
  const Corruption cases[] = {
      {"newer version", [](nlohmann::json& d) { d["version"] = kStateRecordVersion + 1; }},
      {"version 1 (no entries)", [](nlohmann::json& d) { d["version"] = 1; }},
      {"version as text", [](nlohmann::json& d) { d["version"] = "1"; }},
      {"other format", [](nlohmann::json& d) { d["format"] = "other"; }},
      {"unknown top key", [](nlohmann::json& d) { d["extra"] = 1; }},
      {"missing owners", [](nlohmann::json& d) { d.erase("owners"); }},
      {"negative generation", [](nlohmann::json& d) { d["generation"] = -1; }},
      {"container id 0", [](nlohmann::json& d) { d["containers"][0]["id"] = 0; }},
      {"repeated container id", [](nlohmann::json& d) { d["containers"][1]["id"] = 3; }},
      {"uid -1", [](nlohmann::json& d) { d["containers"][0]["owner_uid"] = 4294967295ULL; }},
      {"unsorted share",
       [](nlohmann::json& d) {
         d["containers"][0]["shared_users"] = {5, 4};
       }},
      {"bad container fd name", [](nlohmann::json& d) { d["containers"][0]["fd_name"] = "c:3"; }},
      {"empty container fd name", [](nlohmann::json& d) { d["containers"][0]["fd_name"] = ""; }},
      {"repeated fd name", [](nlohmann::json& d) { d["containers"][1]["fd_name"] = "c-3"; }},
      {"unknown container key", [](nlohmann::json& d) { d["containers"][0]["x"] = true; }},
      {"mapping of no container", [](nlohmann::json& d) { d["mappings"][0]["container"] = 9; }},
      {"mapping size 0", [](nlohmann::json& d) { d["mappings"][0]["size"] = 0; }},
      {"mapping wraps",
       [](nlohmann::json& d) { d["mappings"][0]["iova"] = 0xffffffffffff0000ULL; }},
      {"unknown backing", [](nlohmann::json& d) { d["mappings"][0]["backing"] = "1m"; }},
      {"mmio disagrees", [](nlohmann::json& d) { d["mappings"][1]["mmio"] = false; }},
      {"memory without fd", [](nlohmann::json& d) { d["mappings"][0]["fd_name"] = ""; }},
      {"repeated mapping id", [](nlohmann::json& d) { d["mappings"][1]["id"] = 4294967297ULL; }},
      {"size as float", [](nlohmann::json& d) { d["mappings"][0]["size"] = 4096.0; }},
      {"mapping without entries key", [](nlohmann::json& d) { d["mappings"][0].erase("entries"); }},
      {"entries not array", [](nlohmann::json& d) { d["mappings"][0]["entries"] = 1; }},
      {"entry size 0", [](nlohmann::json& d) { d["mappings"][1]["entries"][0]["size"] = 0; }},
      {"entry unaligned offset",
       [](nlohmann::json& d) { d["mappings"][1]["entries"][0]["offset"] = 0x2001; }},
      {"entry offset wraps",
       [](nlohmann::json& d) { d["mappings"][1]["entries"][0]["offset"] = 0xfffffffffffff000ULL; }},
      {"entry unknown key", [](nlohmann::json& d) { d["mappings"][1]["entries"][0]["x"] = 1; }},
      {"entry missing offset",
       [](nlohmann::json& d) { d["mappings"][1]["entries"][0].erase("offset"); }},
      {"entry before the mapping",
       [](nlohmann::json& d) { d["mappings"][1]["entries"][0]["iova"] = 0xffffe000ULL; }},
      {"entry past the mapping",
       [](nlohmann::json& d) { d["mappings"][1]["entries"][0]["size"] = 0x2000; }},
      {"entries out of order",
       [](nlohmann::json& d) {
         std::swap(d["mappings"][0]["entries"][0], d["mappings"][0]["entries"][1]);
       }},
      {"entries overlap",
       [](nlohmann::json& d) { d["mappings"][0]["entries"][1]["iova"] = 0x1000ff000ULL; }},
      {"entries leave a gap",
       [](nlohmann::json& d) { d["mappings"][0]["entries"][0]["size"] = 0xff000; }},
      {"entries do not cover the mapping",
       [](nlohmann::json& d) { d["mappings"][0]["entries"].erase(1); }},
      {"repeated owner", [](nlohmann::json& d) { d["owners"][1]["uid"] = 1000; }},
      {"container id not below next_id", [](nlohmann::json& d) { d["next_id"] = 8; }},
      {"mapping generation not below the floor",
       [](nlohmann::json& d) { d["mapping_generation"] = 1; }},
      {"mapping slot 0", [](nlohmann::json& d) { d["mappings"][1]["id"] = 1ULL << 32; }},
      {"named container with a session",
       [](nlohmann::json& d) { d["containers"][0]["session"] = std::string(32, 'c'); }},
      {"unnamed container without a session",
       [](nlohmann::json& d) { d["containers"][1]["session"] = ""; }},
      {"session token not lowercase hex",
       [](nlohmann::json& d) { d["mappings"][1]["session"] = std::string(32, 'G'); }},
      {"session token too short",
       [](nlohmann::json& d) { d["mappings"][1]["session"] = std::string(31, 'b'); }},
      {"next_id missing", [](nlohmann::json& d) { d.erase("next_id"); }},
      {"owner missing key", [](nlohmann::json& d) { d["owners"][0].erase("mappings"); }},
      {"bar on memory",
       [](nlohmann::json&
              d) { d["mappings"][0]["bar"] = {{"bdf", "0000:00:05.0"}, {"index", 2}}; }},
      {"bar device not a device name",
       [](nlohmann::json& d) { d["mappings"][1]["bar"]["bdf"] = "../../x"; }},
      {"bar device empty", [](nlohmann::json& d) { d["mappings"][1]["bar"]["bdf"] = ""; }},
      {"bar index past 255", [](nlohmann::json& d) { d["mappings"][1]["bar"]["index"] = 256; }},
      {"bar unknown key", [](nlohmann::json& d) { d["mappings"][1]["bar"]["x"] = 1; }},
      {"bar missing in version 4", [](nlohmann::json& d) { d["mappings"][1].erase("bar"); }},
      {"bar in version 3", [](nlohmann::json& d) { d["version"] = 3; }},
      {"regions missing in version 4", [](nlohmann::json& d) { d.erase("regions"); }},
      {"region id 0", [](nlohmann::json& d) { d["regions"][0]["id"] = 0; }},
      {"region id not below next_id", [](nlohmann::json& d) { d["regions"][0]["id"] = 9; }},
      {"region fd name repeated", [](nlohmann::json& d) { d["regions"][0]["fd_name"] = "c-3"; }},
      {"region size 0", [](nlohmann::json& d) { d["regions"][0]["size"] = 0; }},
      {"region wraps",
       [](nlohmann::json& d) { d["regions"][0]["offset"] = 0xffffffffffff0000ULL; }},
      {"region session not a token", [](nlohmann::json& d) { d["regions"][0]["session"] = "x"; }},
      {"region charged as text", [](nlohmann::json& d) { d["regions"][0]["charged"] = "yes"; }},
      {"mapping of an unknown region", [](nlohmann::json& d) { d["mappings"][2]["region"] = 99; }},
      {"region on a mapping with its own fd",
       [](nlohmann::json& d) { d["mappings"][0]["region"] = 5; }},
      {"region on a BAR", [](nlohmann::json& d) { d["mappings"][1]["region"] = 5; }},
      {"slice without its region", [](nlohmann::json& d) { d["mappings"][2]["region"] = 0; }},
      {"devices in version 4", [](nlohmann::json& d) { d["version"] = 4; }},
      {"devices missing in version 5",
       [](nlohmann::json& d) { d["containers"][1].erase("devices"); }},
      {"devices not array", [](nlohmann::json& d) { d["containers"][0]["devices"] = 1; }},
      {"device bdf not a device name",
       [](nlohmann::json& d) { d["containers"][0]["devices"][0]["bdf"] = "../x"; }},
      {"device in a group not the container's",
       [](nlohmann::json& d) { d["containers"][0]["devices"][0]["group"] = 13; }},
      {"device group negative",
       [](nlohmann::json& d) { d["containers"][0]["devices"][0]["group"] = -1; }},
      {"device repeated",
       [](nlohmann::json& d) {
         d["containers"][0]["devices"][1]["bdf"] = d["containers"][0]["devices"][0]["bdf"];
       }},
      {"device fd name invalid",
       [](nlohmann::json& d) { d["containers"][0]["devices"][0]["fd_name"] = "d:3"; }},
      {"device fd name repeated",
       [](nlohmann::json& d) { d["containers"][0]["devices"][0]["fd_name"] = "c-8"; }},
      {"device unknown key", [](nlohmann::json& d) { d["containers"][0]["devices"][0]["x"] = 1; }},
      {"containers not array",
       [](nlohmann::json& d) { d["containers"] = nlohmann::json::object(); }},
  };
  const nlohmann::json good = nlohmann::json::parse(EncodeStateRecord(Sample()));
  for (const auto& c : cases) {
    nlohmann::json doc = good;
    c.edit(doc);
    auto r = DecodeStateRecord(Resealed(doc));
    ASSERT_FALSE(r) << c.what;
    EXPECT_EQ(r.error().code, EINVAL) << c.what;
    EXPECT_EQ(r.error().detail.find("checksum"), std::string::npos)
        << c.what << ": " << r.error().detail;
  }
}

TEST(StateRecord, NotJsonOrNoChecksumIsRefused) {
  for (const std::string bad : {"", "{", "[]", "null", "{\"format\":\"vfiod-state\"}"}) {
    EXPECT_FALSE(DecodeStateRecord(bad)) << bad;
  }
  nlohmann::json doc = nlohmann::json::parse(EncodeStateRecord(Sample()));
  doc.erase("checksum");
  EXPECT_FALSE(DecodeStateRecord(doc.dump()));
}

// The checksum's dump recurses: a document nested deeper than a JSON-RPC
// line may be is refused before it is parsed, with a good checksum or not.
TEST(StateRecord, ADeeplyNestedRecordIsRefusedBeforeParsing) {
  nlohmann::json doc = nlohmann::json::parse(EncodeStateRecord(Sample()));
  nlohmann::json deep = nlohmann::json::array();
  for (int i = 0; i < 100; ++i) {
    deep = nlohmann::json::array({deep});
  }
  doc["owners"][0]["extra"] = deep;
  auto r = DecodeStateRecord(Resealed(doc));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, EINVAL);
  EXPECT_NE(r.error().detail.find("nested deeper"), std::string::npos) << r.error().message();
}

TEST(SealedMemfd, HoldsTheBytesAndCannotChange) {
  const std::string bytes = EncodeStateRecord(Sample());
  auto fd = WriteSealedMemfd("vfiod-state", bytes);
  ASSERT_TRUE(fd) << fd.error().message();
  EXPECT_EQ(ReadSealedMemfd(fd->get()).value_or(""), bytes);
  EXPECT_LT(::pwrite(fd->get(), "x", 1, 0), 0);
  EXPECT_EQ(errno, EPERM);
  EXPECT_LT(::ftruncate(fd->get(), 1), 0);
  EXPECT_LT(::fcntl(fd->get(), F_ADD_SEALS, F_SEAL_FUTURE_WRITE), 0);  // F_SEAL_SEAL
  EXPECT_EQ(::mmap(nullptr, 4096, PROT_WRITE, MAP_SHARED, fd->get(), 0), MAP_FAILED);
}

TEST(SealedMemfd, AnUnsealedOrForeignFileIsNotTrusted) {
  UniqueFd open_memfd(::memfd_create("x", MFD_CLOEXEC | MFD_ALLOW_SEALING));
  ASSERT_TRUE(open_memfd);
  ASSERT_EQ(::write(open_memfd.get(), "{}", 2), 2);
  ASSERT_EQ(::fcntl(open_memfd.get(), F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW), 0);
  EXPECT_EQ(ReadSealedMemfd(open_memfd.get()).error().code, EPERM);  // still writable
  int pipe_fds[2];
  ASSERT_EQ(::pipe2(pipe_fds, O_CLOEXEC), 0);
  UniqueFd r(pipe_fds[0]);
  UniqueFd w(pipe_fds[1]);
  EXPECT_EQ(ReadSealedMemfd(r.get()).error().code, EINVAL);  // not a memfd
}

class RecordStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto s = testing::FdStoreSupervisor::Create(::testing::TempDir());
    ASSERT_TRUE(s) << s.error().message();
    supervisor_.emplace(std::move(*s));
  }
  std::string Run(std::vector<std::string> args) {
    args.insert(args.begin(), LIFECYCLE_CHILD);
    auto run = testing::RunChild(*supervisor_, args, {});
    EXPECT_TRUE(run);
    return run ? run->output : "";
  }
  std::optional<testing::FdStoreSupervisor> supervisor_;
};

TEST_F(RecordStoreTest, EachNewRecordReplacesTheOldAndSurvivesARestart) {
  EXPECT_EQ(Run({"record", "1"}), "recorded 1\n");
  EXPECT_EQ(Run({"record", "2"}), "recorded 2\n");
  // The new record went in before the old one was removed: the messages
  // show the store never lacked one.
  const auto& m = supervisor_->messages();
  ASSERT_EQ(m.size(), 4u);
  EXPECT_EQ(m[2], "FDSTORE=1\nFDNAME=vfiod-state-0");
  EXPECT_EQ(m[3], "FDSTOREREMOVE=1\nFDNAME=vfiod-state-1");
  ASSERT_EQ(supervisor_->store().size(), 1u);
  EXPECT_EQ(supervisor_->store()[0].name, "vfiod-state-0");
  EXPECT_EQ(Run({"pick"}), "record 2 1\n");
  EXPECT_EQ(Run({"record", "3"}), "recorded 3\n");
  EXPECT_EQ(Run({"pick"}), "record 3 1\n");
}

TEST_F(RecordStoreTest, ACrashBetweenStoreAndRemoveLeavesTwoAndTheNewestWins) {
  EXPECT_EQ(Run({"record", "6"}), "recorded 6\n");
  // Generation 7 stored, the removal of 6 never sent (the daemon died).
  auto fd = WriteSealedMemfd("vfiod-state", [] {
    StateRecord r;
    r.generation = 7;
    return EncodeStateRecord(r);
  }());
  ASSERT_TRUE(fd);
  const int fds[] = {fd->get()};
  ASSERT_TRUE(NotifyTo(supervisor_->notify_socket(), "FDSTORE=1\nFDNAME=vfiod-state-1", fds));
  ASSERT_TRUE(supervisor_->Pump(1000));
  ASSERT_EQ(supervisor_->store().size(), 2u);
  EXPECT_EQ(Run({"pick"}), "record 7 0\n");
}

TEST_F(RecordStoreTest, AnUnsealedRecordIsRefusedNotTrusted) {
  UniqueFd fake(::memfd_create("vfiod-state", MFD_CLOEXEC));
  const std::string bytes = EncodeStateRecord(StateRecord{});
  ASSERT_EQ(::write(fake.get(), bytes.data(), bytes.size()), static_cast<ssize_t>(bytes.size()));
  const int fds[] = {fake.get()};
  ASSERT_TRUE(NotifyTo(supervisor_->notify_socket(), "FDSTORE=1\nFDNAME=vfiod-state-0", fds));
  ASSERT_TRUE(supervisor_->Pump(1000));
  const std::string out = Run({"pick"});
  EXPECT_TRUE(out.starts_with("error 1 ")) << out;  // EPERM
}

TEST_F(RecordStoreTest, NoRecordIsENOENT) { EXPECT_TRUE(Run({"pick"}).starts_with("error 2 ")); }

}  // namespace
}  // namespace vfiod::lifecycle
