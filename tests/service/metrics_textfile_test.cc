// The metrics textfile writer (service/metrics_textfile.h): the target is
// only ever replaced by rename (watched with inotify: no write to it ever
// happens in place), mode 0644 whatever the umask, rewritten at its
// interval, nothing left behind, and a failing directory neither stops the
// writer nor leaves files: once the directory exists, the file appears.
#include "service/metrics_textfile.h"

#include <gtest/gtest.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

namespace vfiod::service {
namespace {

namespace fs = std::filesystem;
using std::chrono::milliseconds;

class TextfileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "vfiod-textfile-XXXXXX").string();
    dir_ = ::mkdtemp(tmpl.data());
  }
  void TearDown() override { fs::remove_all(dir_); }

  /// Waits (up to 30 s: a bound on a hang, not a timing assertion) for `done`.
  template <class Pred>
  static bool WaitFor(Pred done) {
    for (int i = 0; i < 3000 && !done(); ++i) {
      std::this_thread::sleep_for(milliseconds(10));
    }
    return done();
  }
  static std::string Read(const fs::path& p) {
    std::ifstream in(p);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
  }
  std::vector<std::string> Entries() const {
    std::vector<std::string> names;
    for (const auto& e : fs::directory_iterator(dir_)) {
      names.push_back(e.path().filename().string());
    }
    return names;
  }

  fs::path dir_;
};

TEST_F(TextfileTest, WritesWholeFilesByRenameWithMode0644) {
  const fs::path target = dir_ / "vfiod.prom";
  // inotify sees every event on the directory's entries, with their names.
  int in = ::inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
  ASSERT_GE(in, 0);
  ASSERT_GE(::inotify_add_watch(in, dir_.c_str(), IN_ALL_EVENTS), 0);
  const mode_t old_umask = ::umask(077);  // mkostemp's 0600 and a strict umask: still 0644
  std::atomic<int> renders{0};
  {
    MetricsTextfile writer(target.string(), milliseconds(20), [&] {
      return "# HELP x h\n# TYPE x gauge\nx " + std::to_string(++renders) + "\n";
    });
    ASSERT_TRUE(WaitFor([&] { return writer.writes() >= 3; }));
    EXPECT_EQ(writer.failures(), 0U);
    struct stat st {};
    ASSERT_EQ(::stat(target.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 07777, 0644U);
    EXPECT_TRUE(Read(target).starts_with("# HELP x h\n# TYPE x gauge\nx ")) << Read(target);
  }
  ::umask(old_umask);
  EXPECT_FALSE(fs::exists(target)) << "a stopped writer removes its file";
  EXPECT_TRUE(Entries().empty()) << "temp files left behind";

  alignas(inotify_event) char buf[1 << 16];
  int moved_to_target = 0;
  bool temp_named_prom = false;
  for (ssize_t n; (n = ::read(in, buf, sizeof buf)) > 0;) {
    for (char* p = buf; p < buf + n;) {
      auto* ev = reinterpret_cast<inotify_event*>(p);
      std::string name = ev->len ? ev->name : "";
      if (name == "vfiod.prom") {
        // Readers only ever see a whole file: the target is never opened,
        // written or truncated in place, only renamed over (and removed).
        EXPECT_EQ(ev->mask & (IN_MODIFY | IN_CLOSE_WRITE | IN_CREATE), 0U)
            << "event " << std::hex << ev->mask << " on the target";
        moved_to_target += (ev->mask & IN_MOVED_TO) ? 1 : 0;
      } else if (!name.empty() && name.ends_with(".prom")) {
        temp_named_prom = true;
      }
      p += sizeof(inotify_event) + ev->len;
    }
  }
  ::close(in);
  EXPECT_GE(moved_to_target, 3);
  EXPECT_FALSE(temp_named_prom) << "a temp file named *.prom would be read by the collector";
}

TEST_F(TextfileTest, RewritesAtItsInterval) {
  const fs::path target = dir_ / "vfiod.prom";
  std::atomic<int> renders{0};
  MetricsTextfile writer(target.string(), milliseconds(10),
                         [&] { return "n " + std::to_string(++renders) + "\n"; });
  ASSERT_TRUE(WaitFor([&] { return writer.writes() >= 5; }));
  // The file holds a later render than the first.
  EXPECT_NE(Read(target), "n 1\n");
}

TEST_F(TextfileTest, SurvivesAMissingDirectoryAndRecovers) {
  const fs::path sub = dir_ / "later";
  const fs::path target = sub / "vfiod.prom";
  MetricsTextfile writer(target.string(), milliseconds(10), [] { return "x 1\n"; });
  ASSERT_TRUE(WaitFor([&] { return writer.failures() >= 3; }));
  EXPECT_EQ(writer.writes(), 0U);
  fs::create_directory(sub);
  ASSERT_TRUE(WaitFor([&] { return writer.writes() >= 1; }));
  EXPECT_EQ(Read(target), "x 1\n");
}

TEST_F(TextfileTest, UnwritableDirectoryFailsCleanly) {
  // /proc takes no new files, even from root.
  auto written = MetricsTextfile::WriteAtomically("/proc/vfiod-test.prom", "x 1\n");
  ASSERT_FALSE(written.has_value());
  EXPECT_NE(written.error().message().find("create a temp file in /proc"), std::string::npos)
      << written.error().message();
  if (::geteuid() != 0) {  // root writes into a 0555 directory (CAP_DAC_OVERRIDE)
    fs::permissions(dir_, fs::perms::owner_read | fs::perms::owner_exec);
    written = MetricsTextfile::WriteAtomically((dir_ / "vfiod.prom").string(), "x 1\n");
    fs::permissions(dir_, fs::perms::owner_all);
    ASSERT_FALSE(written.has_value());
    EXPECT_EQ(written.error().code, EACCES);
    EXPECT_TRUE(Entries().empty());
  }
}

TEST_F(TextfileTest, RenameFailureRemovesTheTempFile) {
  // The target is a directory: the rename fails (EISDIR) after the temp
  // file was written; it must not stay behind.
  fs::create_directory(dir_ / "vfiod.prom");
  auto written = MetricsTextfile::WriteAtomically((dir_ / "vfiod.prom").string(), "x 1\n");
  ASSERT_FALSE(written.has_value());
  EXPECT_EQ(written.error().code, EISDIR);
  EXPECT_EQ(Entries(), std::vector<std::string>{"vfiod.prom"});
}

}  // namespace
}  // namespace vfiod::service
