// systemd/vfiod.catalog explains every MESSAGE_ID the code sends, and only
// those; journalctl itself reads it (when journalctl is installed); and the
// guest's check script (tests/systemd/journal_check.sh) uses the code's ids.
#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <string>

#include "journal/event.h"

namespace vfiod::journal {
namespace {

/// Each "-- <id>" header of the catalog, with the Subject line of its entry.
std::map<std::string, std::string> CatalogEntries() {
  std::ifstream in(VFIOD_CATALOG);
  EXPECT_TRUE(in) << VFIOD_CATALOG;
  std::map<std::string, std::string> out;
  std::string line;
  std::string current;
  while (std::getline(in, line)) {
    if (line.rfind("-- ", 0) == 0) {
      current = line.substr(3);
      EXPECT_TRUE(out.emplace(current, "").second) << "twice in the catalog: " << current;
    } else if (!current.empty() && line.rfind("Subject: ", 0) == 0) {
      out[current] = line.substr(9);
    }
  }
  return out;
}

TEST(JournalCatalogTest, ExplainsEveryMessageIdOfTheCodeAndNoOther) {
  std::map<std::string, std::string> catalog = CatalogEntries();
  std::set<std::string> code;
  for (const KindInfo& info : Kinds()) {
    code.emplace(info.message_id);
    auto it = catalog.find(std::string(info.message_id));
    ASSERT_NE(it, catalog.end()) << info.name << " (" << info.message_id << ") has no entry";
    EXPECT_FALSE(it->second.empty()) << info.name << ": the entry has no Subject";
  }
  for (const auto& [id, subject] : catalog) {
    EXPECT_TRUE(code.contains(id))
        << "the catalog explains " << id << " (" << subject << "), which no event sends";
  }
}

TEST(JournalCatalogTest, TheGuestCheckScriptUsesTheCodesIds) {
  std::ifstream in(VFIOD_JOURNAL_CHECK);
  ASSERT_TRUE(in) << VFIOD_JOURNAL_CHECK;
  std::string line;
  int ids = 0;
  while (std::getline(in, line)) {
    if (line.rfind("ID_", 0) != 0) {
      continue;
    }
    const std::size_t eq = line.find('=');
    ASSERT_NE(eq, std::string::npos) << line;
    const std::string name = line.substr(3, eq - 3);
    const std::string id = line.substr(eq + 1);
    bool known = false;
    for (const KindInfo& info : Kinds()) {
      if (info.name == name) {
        EXPECT_EQ(info.message_id, id) << name;
        known = true;
      }
    }
    EXPECT_TRUE(known) << "journal_check.sh names no event kind: " << name;
    ++ids;
  }
  EXPECT_EQ(ids, 5);  // connection, container, map, free, quota refusal
}

TEST(JournalCatalogTest, JournalctlReadsIt) {
  if (::access("/usr/bin/journalctl", X_OK) != 0 && ::access("/bin/journalctl", X_OK) != 0) {
    GTEST_SKIP() << "no journalctl";
  }
  namespace fs = std::filesystem;
  std::string tmpl = (fs::temp_directory_path() / "vfiod-catalog-XXXXXX").string();
  const fs::path root = ::mkdtemp(tmpl.data());
  fs::create_directories(root / "usr/lib/systemd/catalog");
  fs::copy_file(VFIOD_CATALOG, root / "usr/lib/systemd/catalog/vfiod.catalog");
  const std::string journalctl = "journalctl --root=" + root.string();
  ASSERT_EQ(std::system((journalctl + " --update-catalog").c_str()), 0);
  std::FILE* list = ::popen((journalctl + " --list-catalog").c_str(), "r");
  ASSERT_NE(list, nullptr);
  std::set<std::string> listed;
  char buf[512];
  while (std::fgets(buf, sizeof buf, list) != nullptr) {
    listed.insert(std::string(buf).substr(0, 32));
  }
  EXPECT_EQ(::pclose(list), 0);
  fs::remove_all(root);
  for (const KindInfo& info : Kinds()) {
    EXPECT_TRUE(listed.contains(std::string(info.message_id))) << info.name;
  }
}

}  // namespace
}  // namespace vfiod::journal
