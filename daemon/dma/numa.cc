#include "dma/numa.h"

#include <linux/mempolicy.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <climits>
#include <fstream>
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

Result<int> DeviceNumaNode(const std::string& device_dir) {
  auto text = ReadSmallFile(device_dir + "/numa_node");
  if (!text) {
    return -1;  // no NUMA support in the kernel: the device has no node
  }
  const int node = VFIOD_TRY(ParseInt(*text));
  return node < 0 ? -1 : node;
}

Result<void> BindToNode(void* addr, size_t len, const NumaPolicy& policy,
                        const std::string& node_dir) {
  if (policy.node < 0) {
    return Ok();
  }
  auto online = OnlineNumaNodes(node_dir);
  const std::vector<int> nodes = online ? *online : std::vector<int>{0};
  if (std::find(nodes.begin(), nodes.end(), policy.node) == nodes.end()) {
    return Fail(EINVAL, "mbind",
                "NUMA node " + std::to_string(policy.node) +
                    " is not online (online: " + JoinNodes(nodes) + ")");
  }
  if (nodes.size() == 1) {
    return Ok();  // one node: every allocation lands there anyway
  }
  constexpr size_t kBitsPerWord = sizeof(unsigned long) * CHAR_BIT;
  std::vector<unsigned long> mask(static_cast<size_t>(policy.node) / kBitsPerWord + 1, 0);
  mask[static_cast<size_t>(policy.node) / kBitsPerWord] |=
      1UL << (static_cast<size_t>(policy.node) % kBitsPerWord);
  const int mode = policy.strict ? MPOL_BIND : MPOL_PREFERRED;
  // The kernel reads maxnode - 1 bits (a historic off-by-one): pass one more.
  const unsigned long maxnode = mask.size() * kBitsPerWord + 1;
  if (::syscall(SYS_mbind, addr, len, mode, mask.data(), maxnode, MPOL_MF_MOVE) != 0) {
    return ErrnoError("mbind", errno, "node " + std::to_string(policy.node));
  }
  return Ok();
}

}  // namespace vfiod::dma
