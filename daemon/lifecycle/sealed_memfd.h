// Bytes in a sealed memfd: written once, then nobody (vfiod included) can
// change, grow, shrink or unseal it. The state record lives in one, so a
// record that arrives back from the fd store is exactly the one stored.
#pragma once

#include <string>
#include <string_view>

#include "proto/result.h"
#include "proto/unique_fd.h"

namespace vfiod::lifecycle {

/// The seals a record's memfd carries, all of them required on read.
inline constexpr int kRecordSeals = 0x1 | 0x2 | 0x4 | 0x8;  // SEAL|SHRINK|GROW|WRITE

/// The most bytes a sealed record may hold (refused above, on write and read).
inline constexpr size_t kMaxSealedBytes = 64u << 20;

/// A new memfd (MFD_CLOEXEC | MFD_ALLOW_SEALING, named `name` for
/// /proc/PID/fd) holding exactly `bytes`, sealed with kRecordSeals.
/// Errors: EFBIG (more than kMaxSealedBytes), and memfd_create's, write's
/// and F_ADD_SEALS's (ENOMEM, EMFILE, ENOSPC).
[[nodiscard]] Result<UniqueFd> WriteSealedMemfd(const char* name, std::string_view bytes);

/// The contents of a sealed memfd written by WriteSealedMemfd.
/// Errors: EPERM (not carrying every seal of kRecordSeals: it could still
/// change under us, so it is not trusted), EFBIG (larger than
/// kMaxSealedBytes), EIO (shorter read than its size), and fstat's,
/// F_GET_SEALS's (EINVAL: not a memfd) and pread's.
[[nodiscard]] Result<std::string> ReadSealedMemfd(int fd);

}  // namespace vfiod::lifecycle
