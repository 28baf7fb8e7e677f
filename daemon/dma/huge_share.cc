// Parsing /proc/PID/smaps for the bytes mapped by huge entries
// (Documentation/filesystems/proc.rst, "smaps"): a header line per VMA
// ("start-end perms offset dev inode [path]", hex addresses), then
// "Key:   value kB" lines.
#include "dma/huge_share.h"

#include <charconv>
#include <string>
#include <vector>

namespace vfiod::dma {
namespace {

struct Vma {
  uint64_t start = 0;
  uint64_t end = 0;
  uint64_t kernel_page_kb = 4;
  uint64_t pmd_kb = 0;      // AnonHugePages + ShmemPmdMapped + FilePmdMapped
  uint64_t hugetlb_kb = 0;  // Shared_Hugetlb + Private_Hugetlb
};

// "start-end ..." -> the two addresses; nullopt for a "Key: value" line.
std::optional<std::pair<uint64_t, uint64_t>> ParseHeader(std::string_view line) {
  const size_t dash = line.find('-');
  const size_t space = line.find(' ');
  if (dash == std::string_view::npos || space == std::string_view::npos || dash > space ||
      line.substr(0, space).find(':') != std::string_view::npos) {
    return std::nullopt;
  }
  uint64_t start = 0;
  uint64_t end = 0;
  auto a = std::from_chars(line.data(), line.data() + dash, start, 16);
  auto b = std::from_chars(line.data() + dash + 1, line.data() + space, end, 16);
  if (a.ec != std::errc() || a.ptr != line.data() + dash || b.ec != std::errc() ||
      b.ptr != line.data() + space || end <= start) {
    return std::nullopt;
  }
  return std::pair{start, end};
}

// "Key:   123 kB" -> ("Key", 123); nullopt when the value is not a number.
std::optional<std::pair<std::string_view, uint64_t>> ParseField(std::string_view line) {
  const size_t colon = line.find(':');
  if (colon == std::string_view::npos) {
    return std::nullopt;
  }
  std::string_view rest = line.substr(colon + 1);
  const size_t digit = rest.find_first_not_of(' ');
  if (digit == std::string_view::npos) {
    return std::nullopt;
  }
  uint64_t value = 0;
  auto r = std::from_chars(rest.data() + digit, rest.data() + rest.size(), value);
  if (r.ec != std::errc()) {
    return std::nullopt;
  }
  return std::pair{line.substr(0, colon), value};
}

Result<std::vector<Vma>> ParseSmaps(std::string_view smaps) {
  std::vector<Vma> vmas;
  while (!smaps.empty()) {
    const size_t nl = smaps.find('\n');
    std::string_view line = smaps.substr(0, nl);
    smaps = nl == std::string_view::npos ? std::string_view() : smaps.substr(nl + 1);
    if (line.empty()) {
      continue;
    }
    if (auto header = ParseHeader(line)) {
      vmas.push_back(Vma{header->first, header->second});
      continue;
    }
    auto field = ParseField(line);
    if (!field || vmas.empty()) {
      if (line.starts_with("VmFlags:") && !vmas.empty()) {
        continue;  // flags, not a number
      }
      return Fail(EPROTO, "smaps", "unexpected line: " + std::string(line.substr(0, 80)));
    }
    Vma& vma = vmas.back();
    const auto& [key, kb] = *field;
    if (key == "KernelPageSize") {
      vma.kernel_page_kb = kb;
    } else if (key == "AnonHugePages" || key == "ShmemPmdMapped" || key == "FilePmdMapped") {
      vma.pmd_kb += kb;
    } else if (key == "Shared_Hugetlb" || key == "Private_Hugetlb") {
      vma.hugetlb_kb += kb;
    }
  }
  return vmas;
}

}  // namespace

Result<std::optional<uint64_t>> HugeBytesFromSmaps(std::string_view smaps, uint64_t addr,
                                                   uint64_t len) {
  if (len == 0 || addr + len < addr) {
    return Fail(EINVAL, "smaps", "empty or wrapping range");
  }
  const uint64_t end = addr + len;
  std::vector<Vma> vmas = VFIOD_TRY(ParseSmaps(smaps));
  uint64_t covered_to = addr;  // the VMAs seen so far tile [addr, covered_to)
  uint64_t huge_kb = 0;
  for (const Vma& vma : vmas) {
    if (vma.end <= addr || vma.start >= end) {
      continue;
    }
    if (vma.start != covered_to || vma.end > end) {
      return std::optional<uint64_t>();  // part of a VMA, or a hole: smaps cannot tell
    }
    covered_to = vma.end;
    huge_kb += vma.kernel_page_kb >= 2048 ? vma.hugetlb_kb : vma.pmd_kb;
  }
  if (covered_to != end) {
    return std::optional<uint64_t>();
  }
  return std::optional<uint64_t>(huge_kb * 1024);
}

}  // namespace vfiod::dma
