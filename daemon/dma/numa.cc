#include "dma/numa.h"

#include <linux/mempolicy.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <climits>
#include <fstream>
#include <optional>
#include <sstream>

namespace vfiod::dma {
namespace {

Result<int> ParseInt(std::string_view text) {
  int value = 0;
  const auto* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, value);
  if (ec != std::errc() || ptr != end) {
    return Fail(EINVAL, "parse node number", "not a number: '" + std::string(text) + "'");
  }
  return value;
}

std::string Trimmed(std::string text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) {
    text.pop_back();
  }
  return text;
}

Result<std::string> ReadSmallFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) {
    return ErrnoError("open " + path, errno != 0 ? errno : ENOENT);
  }
  std::stringstream text;
  text << in.rdbuf();
  return Trimmed(text.str());
}

std::string JoinNodes(const std::vector<int>& nodes) {
  std::string out;
  for (int node : nodes) {
    out += (out.empty() ? "" : ",") + std::to_string(node);
  }
  return out.empty() ? "none" : out;
}

}  // namespace

Result<std::vector<int>> ParseNodeList(const std::string& text) {
  std::vector<int> nodes;
  std::string_view rest = text;
  while (!rest.empty()) {
    const size_t comma = rest.find(',');
    const std::string_view item = rest.substr(0, comma);
    rest = comma == std::string_view::npos ? std::string_view{} : rest.substr(comma + 1);
    const size_t dash = item.find('-');
    const int first = VFIOD_TRY(ParseInt(item.substr(0, dash)));
    const int last =
        dash == std::string_view::npos ? first : VFIOD_TRY(ParseInt(item.substr(dash + 1)));
    if (first < 0 || last < first) {
      return Fail(EINVAL, "parse node list", "bad range in '" + text + "'");
    }
    for (int node = first; node <= last; ++node) {
      nodes.push_back(node);
    }
  }
  return nodes;
}

Result<std::vector<int>> OnlineNumaNodes(const std::string& node_dir) {
  const std::string text = VFIOD_TRY(ReadSmallFile(node_dir + "/online"));
  return ParseNodeList(text);
}

Result<std::vector<int>> CheckNodeOnline(int node, const std::string& node_dir) {
  auto online = OnlineNumaNodes(node_dir);
  const std::vector<int> nodes = online ? *online : std::vector<int>{0};
  if (std::find(nodes.begin(), nodes.end(), node) == nodes.end()) {
    return Fail(
        EINVAL, "check NUMA node",
        "NUMA node " + std::to_string(node) + " is not online (online: " + JoinNodes(nodes) + ")");
  }
  return nodes;
}

Result<int> DeviceNumaNode(const std::string& device_dir) {
  auto text = ReadSmallFile(device_dir + "/numa_node");
  if (!text) {
    return -1;  // no NUMA support in the kernel: the device has no node
  }
  const int node = VFIOD_TRY(ParseInt(*text));
  return node < 0 ? -1 : node;
}

namespace {

/// A policy's node as the kernel's node mask, with the mode.
struct PolicyMask {
  int mode = MPOL_DEFAULT;
  std::vector<unsigned long> bits;
  /// The kernel reads maxnode - 1 bits (a historic off-by-one): one more.
  [[nodiscard]] unsigned long maxnode() const { return bits.size() * kBitsPerWord + 1; }
  static constexpr size_t kBitsPerWord = sizeof(unsigned long) * CHAR_BIT;
};

/// The mask for `policy`, or nullopt when the policy changes nothing (no
/// node asked, or a single online node). EINVAL: the node is not online.
Result<std::optional<PolicyMask>> MaskFor(const NumaPolicy& policy, const std::string& node_dir,
                                          const char* op) {
  if (policy.node < 0) {
    return std::nullopt;
  }
  auto online = CheckNodeOnline(policy.node, node_dir);
  if (!online) {
    online.error().op = op;
    return std::unexpected(online.error());
  }
  if (online->size() == 1) {
    return std::nullopt;  // one node: every allocation lands there anyway
  }
  PolicyMask mask;
  mask.mode = policy.strict ? MPOL_BIND : MPOL_PREFERRED;
  const auto node = static_cast<size_t>(policy.node);
  mask.bits.assign(node / PolicyMask::kBitsPerWord + 1, 0);
  mask.bits[node / PolicyMask::kBitsPerWord] |= 1UL << (node % PolicyMask::kBitsPerWord);
  return mask;
}

}  // namespace

Result<void> BindToNode(void* addr, size_t len, const NumaPolicy& policy,
                        const std::string& node_dir) {
  const std::optional<PolicyMask> mask = VFIOD_TRY(MaskFor(policy, node_dir, "mbind"));
  if (!mask) {
    return Ok();
  }
  if (::syscall(SYS_mbind, addr, len, mask->mode, mask->bits.data(), mask->maxnode(),
                MPOL_MF_MOVE) != 0) {
    return ErrnoError("mbind", errno, "node " + std::to_string(policy.node));
  }
  return Ok();
}

Result<ThreadNodePolicy> ThreadNodePolicy::Apply(const NumaPolicy& policy,
                                                 const std::string& node_dir) {
  const std::optional<PolicyMask> mask = VFIOD_TRY(MaskFor(policy, node_dir, "set_mempolicy"));
  if (!mask) {
    return ThreadNodePolicy(false);
  }
  if (::syscall(SYS_set_mempolicy, mask->mode, mask->bits.data(), mask->maxnode()) != 0) {
    return ErrnoError("set_mempolicy", errno, "node " + std::to_string(policy.node));
  }
  return ThreadNodePolicy(true);
}

ThreadNodePolicy::~ThreadNodePolicy() {
  if (active_) {
    // Cannot fail for MPOL_DEFAULT with no mask.
    (void)::syscall(SYS_set_mempolicy, MPOL_DEFAULT, nullptr, 0UL);
  }
}

int NodePlacement::node() const {
  if (bytes.size() != 1 || bytes.begin()->first < 0) {
    return -1;
  }
  return bytes.begin()->first;
}

Result<NodePlacement> NodesOf(const void* addr, uint64_t len, uint64_t page) {
  const auto start = reinterpret_cast<uintptr_t>(addr);
  if (page < 4096 || (page & (page - 1)) != 0 || start % page != 0 || len % page != 0) {
    return Fail(EINVAL, "move_pages", "range or page size not page-aligned");
  }
  constexpr size_t kBatch = 1024;
  std::vector<void*> pages;
  std::vector<int> status;
  pages.reserve(kBatch);
  status.resize(kBatch);
  NodePlacement placement;
  for (uint64_t done = 0; done < len;) {
    pages.clear();
    for (; done < len && pages.size() < kBatch; done += page) {
      // const_cast: move_pages only reads the addresses (nodes == NULL).
      pages.push_back(const_cast<char*>(static_cast<const char*>(addr)) + done);
    }
    // nodes == NULL: only report each page's node (or -errno) in status.
    if (::syscall(SYS_move_pages, 0, pages.size(), pages.data(), nullptr, status.data(), 0) != 0) {
      return ErrnoError("move_pages");
    }
    for (size_t i = 0; i < pages.size(); ++i) {
      placement.bytes[status[i] < 0 ? -1 : status[i]] += page;
    }
  }
  return placement;
}

}  // namespace vfiod::dma
