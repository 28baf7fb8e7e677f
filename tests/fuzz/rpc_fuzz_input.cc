#include "rpc_fuzz_input.h"

#include <fcntl.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <nlohmann/json.hpp>
#include <string>

#include "fuzz_check.h"
#include "proto/framing.h"
#include "rpc/request.h"

namespace vfiod::fuzz {
namespace {

using nlohmann::json;

// The file sizes of bits 5-7 (rpc_fuzz_input.h).
constexpr off_t kSizes[] = {4096, 0, 8192, 2 << 20, 4097, 65536, 1 << 20, 12288};

// `fd`'s file opened again, read-only (its /proc/self/fd link).
UniqueFd ReadOnly(const UniqueFd& fd) {
  const std::string link = "/proc/self/fd/" + std::to_string(fd.get());
  UniqueFd ro(::open(link.c_str(), O_RDONLY | O_CLOEXEC));
  FUZZ_CHECK(ro);
  return ro;
}

UniqueFd Memfd(uint8_t spec) {
  UniqueFd fd(::memfd_create("fuzz", MFD_CLOEXEC | MFD_ALLOW_SEALING));
  FUZZ_CHECK(fd && ::ftruncate(fd.get(), kSizes[spec >> 5]) == 0);
  const int kind = spec & 7;
  int seals = 0;
  if (kind == 1) {
    seals = F_SEAL_SHRINK;
  } else if (kind == 3) {
    seals = F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL;
  }
  FUZZ_CHECK(seals == 0 || ::fcntl(fd.get(), F_ADD_SEALS, seals) == 0);
  return fd;
}

// Kind 0 with other bits set: one fd of a kind the others do not cover.
UniqueFd OtherFd(uint8_t spec) {
  const int variant = (spec >> 3) & 3;
  if (variant == 0) {
    UniqueFd dir(::open("/dev/shm", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    return dir ? std::move(dir) : UniqueFd(::open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  }
  if (variant == 3) {
    return ReadOnly(Memfd(static_cast<uint8_t>((spec & 0xe0) | 2)));
  }
  // An unnamed file on a tmpfs that is not a memfd (no seals can be set);
  // where /dev/shm is missing, one in /tmp (whatever it is).
  UniqueFd file(::open("/dev/shm", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600));
  if (!file) {
    file.reset(::open("/tmp", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600));
  }
  FUZZ_CHECK(file && ::ftruncate(file.get(), kSizes[spec >> 5]) == 0);
  return variant == 1 ? std::move(file) : ReadOnly(file);
}

UniqueFd OneFd(uint8_t spec) {
  int fds[2] = {-1, -1};
  switch (spec & 7) {
    case 4:
      return UniqueFd(::open("/dev/null", O_RDWR | O_CLOEXEC));
    case 5:
      FUZZ_CHECK(::pipe2(fds, O_CLOEXEC) == 0);
      UniqueFd(fds[1]).reset();
      return UniqueFd(fds[0]);
    case 6:
      FUZZ_CHECK(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) == 0);
      UniqueFd(fds[1]).reset();
      return UniqueFd(fds[0]);
    case 7:
      return UniqueFd(::eventfd(0, EFD_CLOEXEC));
    default:
      return Memfd(spec);
  }
}

// Whether the daemon answers one element of a line (a request or batch element).
bool Answered(const json& element) {
  auto request = rpc::ParseRequest(element);
  return !request || request->id.has_value();
}

bool LineAnswered(const std::string& line) {
  if (line.find_first_not_of(" \t\r") == std::string::npos) {
    return false;
  }
  if (wire::JsonNestingDepth(line) > wire::kMaxJsonDepth) {
    return true;
  }
  const json doc = json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded() || !doc.is_array()) {
    return doc.is_discarded() || Answered(doc);
  }
  bool any = doc.empty();  // an empty batch is an invalid request
  for (const json& element : doc) {
    any = any || Answered(element);
  }
  return any;
}

}  // namespace

std::vector<ClientWrite> SplitWrites(std::string_view input) {
  std::vector<ClientWrite> writes;
  ClientWrite next;
  for (;;) {
    const std::size_t nul = input.find('\0');
    next.bytes = input.substr(0, nul);
    writes.push_back(next);
    if (nul == std::string_view::npos || nul + 1 >= input.size()) {
      return writes;
    }
    next.fds = static_cast<uint8_t>(input[nul + 1]);
    input.remove_prefix(nul + 2);
  }
}

std::string ReplacePlaceholders(std::string_view bytes, const SessionIds& ids) {
  std::string out;
  for (std::size_t i = 0; i < bytes.size(); ++i) {
    const bool placeholder = bytes[i] == '#' && i + 2 < bytes.size() &&
                             std::string_view("cmr").find(bytes[i + 1]) != std::string_view::npos &&
                             bytes[i + 2] >= '0' && bytes[i + 2] <= '9';
    if (!placeholder) {
      out += bytes[i];
      continue;
    }
    const std::vector<uint64_t>& list = bytes[i + 1] == 'c'   ? ids.containers
                                        : bytes[i + 1] == 'm' ? ids.mappings
                                                              : ids.regions;
    const auto n = static_cast<std::size_t>(bytes[i + 2] - '0');
    out += std::to_string(list.empty() ? 0 : list[n % list.size()]);
    i += 2;
  }
  return out;
}

std::vector<UniqueFd> MakeFds(uint8_t spec) {
  if (spec == 0) {
    return {};
  }
  if ((spec & 7) == 0) {
    std::vector<UniqueFd> one;
    one.push_back(OtherFd(spec));
    FUZZ_CHECK(one.back());
    return one;
  }
  constexpr std::size_t kCounts[] = {1, 2, 3, 17};
  std::vector<UniqueFd> fds;
  for (std::size_t i = 0; i < kCounts[(spec >> 3) & 3]; ++i) {
    fds.push_back(OneFd(spec));
    FUZZ_CHECK(fds.back());
  }
  return fds;
}

OwedReplies RepliesOwed(std::string_view stream, std::size_t max_frame) {
  wire::LineFramer framer(max_frame);
  framer.Feed(stream, {}, false);
  OwedReplies owed;
  while (framer.has_frame()) {
    owed.lines += LineAnswered(framer.Pop().line) ? 1 : 0;
  }
  owed.overflow = framer.overflowed();
  return owed;
}

}  // namespace vfiod::fuzz
