#include "service/config_space.h"

#include <fcntl.h>
#include <unistd.h>

#include <array>

#include "proto/unique_fd.h"

namespace vfiod::service {

namespace {

constexpr size_t kHeaderBytes = 64;
constexpr uint8_t kStatusCapList = 0x10;  // status bit 4: a capability list exists
constexpr uint8_t kCapMsi = 0x05;
constexpr uint8_t kCapMsix = 0x11;
constexpr int kMaxCapabilities = 48;  // (256 - 64) / 4: a longer chain loops

uint16_t Le16(std::span<const uint8_t> b, size_t at) {
  return static_cast<uint16_t>(b[at] | (b[at + 1] << 8));
}

}  // namespace

std::optional<ConfigSpaceView> ParseConfigSpace(std::span<const uint8_t> bytes) {
  if (bytes.size() < kHeaderBytes) {
    return std::nullopt;
  }
  ConfigSpaceView v;
  v.command = Le16(bytes, 0x04);
  v.status = Le16(bytes, 0x06);
  v.interrupt_pin = bytes[0x3d];
  if ((v.status & kStatusCapList) == 0) {
    return v;
  }
  size_t at = bytes[0x34] & 0xfc;
  for (int n = 0; n < kMaxCapabilities && at >= kHeaderBytes && at + 4 <= bytes.size(); ++n) {
    const uint8_t id = bytes[at];
    const uint16_t control = Le16(bytes, at + 2);
    v.capabilities.push_back(id);
    if (id == kCapMsi) {
      v.msi_vectors = 1u << ((control >> 1) & 0x7);  // Multiple Message Capable
    } else if (id == kCapMsix) {
      v.msix_vectors = (control & 0x7ff) + 1u;  // Table Size, N-1 encoded
    }
    at = bytes[at + 1] & 0xfc;
  }
  return v;
}

std::optional<ConfigSpaceView> ReadConfigSpace(const std::filesystem::path& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) {
    return std::nullopt;
  }
  std::array<uint8_t, 256> buf{};
  ssize_t n = ::pread(fd.get(), buf.data(), buf.size(), 0);
  if (n <= 0) {
    return std::nullopt;
  }
  return ParseConfigSpace(std::span<const uint8_t>(buf.data(), static_cast<size_t>(n)));
}

}  // namespace vfiod::service
