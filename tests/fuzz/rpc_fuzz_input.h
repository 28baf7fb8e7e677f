// How the rpc fuzz target reads its input, and what the daemon owes for it.
//
// Input format: client writes separated by NUL bytes. The byte after each NUL
// says which fds travel (SCM_RIGHTS) with the write that follows it:
//   bits 0-2  kind: 0 see below, 1 memfd sealed F_SEAL_SHRINK, 2 memfd
//             unsealed, 3 memfd with every seal (F_SEAL_SEAL too),
//             4 /dev/null, 5 a pipe's read end, 6 a unix socket, 7 an eventfd
//   bits 3-4  count: 1, 2, 3, or 17 (past the 16 one message may carry)
//   bits 5-7  file size: 4K, 0, 8K, 2M, 4K+1, 64K, 1M, 12K
// Kind 0: the byte 0 sends no fd; otherwise one fd, by bits 3-4: 0 a
// directory (/dev/shm, or /), 1 a tmpfs file that is no memfd (O_TMPFILE in /dev/shm, or
// /tmp where there is none; sized by bits 5-7), 2 such a file opened
// read-only, 3 an unsealed memfd opened read-only.
// So "line1\n\0Aline2\n" writes line1, then line2 with one sealed 8 KiB memfd.
//
// Ids differ from run to run (the daemon's counters go on across inputs), so
// a write may name them by placeholder: #cN, #mN, #rN stand for the N-th
// (0-9) container, mapping or region id the daemon's results named in this
// session (counted modulo how many there are; 0 when none yet). Before a
// write with a placeholder is sent, every reply owed so far is awaited.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "proto/unique_fd.h"

namespace vfiod::fuzz {

/// One client write and the spec of the fds sent with it (0: none).
struct ClientWrite {
  std::string_view bytes;
  uint8_t fds = 0;
};

[[nodiscard]] std::vector<ClientWrite> SplitWrites(std::string_view input);

/// The ids a session's results named, in the order they arrived.
struct SessionIds {
  std::vector<uint64_t> containers;
  std::vector<uint64_t> mappings;
  std::vector<uint64_t> regions;
};

/// `bytes` with its placeholders replaced by ids from `ids`.
[[nodiscard]] std::string ReplacePlaceholders(std::string_view bytes, const SessionIds& ids);

/// Opens the fds `spec` describes (see the format above).
[[nodiscard]] std::vector<UniqueFd> MakeFds(uint8_t spec);

/// What the daemon owes a client that sent `stream` and then shut down its
/// write side: one reply line per complete line that is not blank and not
/// only notifications (rpc::ParseRequest decides), up to a line longer than
/// `max_frame`, which is answered kFrameTooLarge before the daemon closes.
struct OwedReplies {
  std::size_t lines = 0;  ///< replies owed for the lines before any overflow
  bool overflow = false;  ///< a line was too long: at most lines + 1 arrive
};
[[nodiscard]] OwedReplies RepliesOwed(std::string_view stream, std::size_t max_frame);

}  // namespace vfiod::fuzz
