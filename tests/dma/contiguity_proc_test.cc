// ScanContiguity on this process's real memory through ProcPageInfoReader,
// checked against a straightforward reading: one pread per 4 KiB page of
// /proc/self/pagemap and of /proc/kpageflags.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/capability.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstring>
#include <vector>

#include "dma/contiguity.h"

namespace vfiod::dma {
namespace {

// An anonymous mapping, aligned to `align`, unmapped on destruction.
class AnonBuffer {
 public:
  AnonBuffer(size_t len, size_t align) : len_(len), raw_len_(len + align) {
    raw_ = ::mmap(nullptr, raw_len_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    EXPECT_NE(raw_, MAP_FAILED) << std::strerror(errno);
    auto raw = reinterpret_cast<uintptr_t>(raw_);
    addr_ = (raw + align - 1) & ~(uintptr_t{align} - 1);
  }
  AnonBuffer(const AnonBuffer&) = delete;
  AnonBuffer& operator=(const AnonBuffer&) = delete;
  ~AnonBuffer() {
    if (raw_ != MAP_FAILED) {
      ::munmap(raw_, raw_len_);
    }
  }
  [[nodiscard]] uint64_t addr() const { return addr_; }
  [[nodiscard]] size_t len() const { return len_; }
  [[nodiscard]] void* ptr() const { return reinterpret_cast<void*>(addr_); }
  void Populate() const { std::memset(ptr(), 0x5a, len_); }

 private:
  size_t len_;
  size_t raw_len_;
  void* raw_ = MAP_FAILED;
  uintptr_t addr_ = 0;
};

uint64_t PreadOne(int fd, uint64_t index) {
  uint64_t entry = 0;
  EXPECT_EQ(::pread(fd, &entry, sizeof entry, static_cast<off_t>(index * sizeof entry)),
            static_cast<ssize_t>(sizeof entry));
  return entry;
}

// The reference: runs from one pagemap pread per page; folios from one
// kpageflags pread per page (a head followed by its tails, in PFN order).
struct Reference {
  std::vector<PhysRun> runs;
  std::vector<Folio> folios;
  bool hidden = false;
};

Reference ReadReference(uint64_t addr, uint64_t len) {
  Reference ref;
  int pagemap = ::open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
  int flags = ::open("/proc/kpageflags", O_RDONLY | O_CLOEXEC);
  EXPECT_GE(pagemap, 0);
  std::vector<uint64_t> pfns;
  for (uint64_t v = addr; v < addr + len; v += kPage4K) {
    uint64_t e = PreadOne(pagemap, v / kPage4K);
    EXPECT_TRUE(e & kPagemapPresent) << "page not populated at " << std::hex << v;
    uint64_t pfn = e & kPagemapPfnMask;
    ref.hidden |= pfn == 0;
    pfns.push_back(pfn);
    if (!ref.runs.empty() && ref.runs.back().vaddr + ref.runs.back().len == v &&
        ref.runs.back().paddr + ref.runs.back().len == pfn * kPage4K) {
      ref.runs.back().len += kPage4K;
    } else {
      ref.runs.push_back(PhysRun{v, pfn * kPage4K, kPage4K});
    }
  }
  if (flags >= 0 && !ref.hidden) {
    for (size_t i = 0; i < pfns.size(); ++i) {
      if ((PreadOne(flags, pfns[i]) & kKpfCompoundHead) == 0) {
        continue;
      }
      uint64_t pages = 1;
      while (PreadOne(flags, pfns[i] + pages) & kKpfCompoundTail) {
        ++pages;
      }
      ref.folios.push_back(Folio{addr + i * kPage4K, pages * kPage4K});
    }
  }
  if (flags >= 0) {
    ::close(flags);
  }
  ::close(pagemap);
  return ref;
}

ContiguityScan ScanReal(const AnonBuffer& buf) {
  auto reader = ProcPageInfoReader::Open();
  EXPECT_TRUE(reader) << reader.error().message();
  auto scan = ScanContiguity(**reader, buf.addr(), buf.len());
  EXPECT_TRUE(scan) << scan.error().message();
  return std::move(scan).value();
}

void ExpectMatchesReference(const ContiguityScan& scan, const Reference& ref) {
  if (ref.hidden) {
    EXPECT_EQ(scan.report.state, PhysState::kUnknown);
    EXPECT_TRUE(scan.runs.empty());
    return;
  }
  EXPECT_EQ(scan.report.state, PhysState::kKnown);
  EXPECT_EQ(scan.runs, ref.runs);
  EXPECT_EQ(scan.report.run_count, ref.runs.size());
  EXPECT_EQ(scan.folios, ref.folios);
  uint64_t histogram_runs = 0;
  for (const uint64_t bucket : scan.report.run_histogram) {
    histogram_runs += bucket;
  }
  EXPECT_EQ(histogram_runs, ref.runs.size());
}

TEST(ScanContiguityProc, AnonymousMemoryIn4KPages) {
  AnonBuffer buf(8 << 20, kPage4K);
  ASSERT_EQ(::madvise(buf.ptr(), buf.len(), MADV_NOHUGEPAGE), 0);
  buf.Populate();
  ContiguityScan scan = ScanReal(buf);
  Reference ref = ReadReference(buf.addr(), buf.len());
  ExpectMatchesReference(scan, ref);
  EXPECT_EQ(scan.report.pages, buf.len() / kPage4K);
  EXPECT_EQ(scan.report.pages_not_present, 0u);
  EXPECT_EQ(scan.report.folios_2m, 0u);  // MADV_NOHUGEPAGE: no PMD folios
}

TEST(ScanContiguityProc, TransparentHugePages) {
  AnonBuffer buf(16 << 20, kPage2M);
  ASSERT_EQ(::madvise(buf.ptr(), buf.len(), MADV_HUGEPAGE), 0);
  buf.Populate();
  ContiguityScan scan = ScanReal(buf);
  Reference ref = ReadReference(buf.addr(), buf.len());
  ExpectMatchesReference(scan, ref);
  uint64_t ref_2m = 0;
  for (const Folio& f : ref.folios) {
    ref_2m += f.size == kPage2M;
  }
  EXPECT_EQ(scan.report.folios_2m, ref_2m);
  // Every THP lies inside one physical run.
  for (const Folio& f : scan.folios) {
    bool inside = false;
    for (const PhysRun& r : scan.runs) {
      inside |= f.vaddr >= r.vaddr && f.vaddr + f.size <= r.vaddr + r.len;
    }
    EXPECT_TRUE(inside) << std::hex << f.vaddr;
  }
}

TEST(ScanContiguityProc, ARangeStartingInsideATransparentHugePage) {
  AnonBuffer buf(8 << 20, kPage2M);
  ASSERT_EQ(::madvise(buf.ptr(), buf.len(), MADV_HUGEPAGE), 0);
  buf.Populate();
  ContiguityScan whole = ScanReal(buf);
  auto reader = ProcPageInfoReader::Open();
  ASSERT_TRUE(reader);
  uint64_t addr = buf.addr() + kPage2M / 2;
  uint64_t len = 2 * kPage2M;
  auto part = ScanContiguity(**reader, addr, len);
  ASSERT_TRUE(part) << part.error().message();
  // The sub-range sees exactly the whole scan's folios that overlap it, whole.
  std::vector<Folio> overlapping;
  for (const Folio& f : whole.folios) {
    if (f.vaddr < addr + len && addr < f.vaddr + f.size) {
      overlapping.push_back(f);
    }
  }
  EXPECT_EQ(part->folios, overlapping);
  EXPECT_EQ(part->report.folios_2m, overlapping.size());
}

// Without CAP_SYS_ADMIN the kernel zeroes PFNs in pagemap (decided when the
// file is opened): the scan must say "unknown" and plan virtually. Runs in a
// child that drops the capability, so the test process keeps it.
TEST(ScanContiguityProcDeathTest, WithoutCapSysAdminPhysicalAddressesAreUnknown) {
  AnonBuffer buf(1 << 20, kPage4K);
  buf.Populate();
  auto child = [&buf] {
    __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
    __user_cap_data_struct data[2] = {};
    if (::syscall(SYS_capget, &header, data) != 0) {
      ::_exit(2);
    }
    data[CAP_SYS_ADMIN / 32].effective &= ~(1u << (CAP_SYS_ADMIN % 32));
    if (::syscall(SYS_capset, &header, data) != 0) {
      ::_exit(3);
    }
    auto reader = ProcPageInfoReader::Open();
    if (!reader) {
      ::_exit(4);
    }
    auto scan = ScanContiguity(**reader, buf.addr(), buf.len());
    bool degraded = scan && scan->report.state == PhysState::kUnknown && scan->runs.empty() &&
                    scan->report.note.find("CAP_SYS_ADMIN") != std::string::npos;
    ::_exit(degraded ? 0 : 1);
  };
  EXPECT_EXIT(child(), ::testing::ExitedWithCode(0), "");
}

}  // namespace
}  // namespace vfiod::dma
