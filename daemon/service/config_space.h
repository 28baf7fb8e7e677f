// A PCI function's configuration space as sysfs shows it (the `config` file
// of the device's folder): the header fields and capabilities device.info
// reports without opening the device through VFIO.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <span>
#include <vector>

namespace vfiod::service {

struct ConfigSpaceView {
  uint16_t command = 0;
  uint16_t status = 0;
  uint8_t interrupt_pin = 0;          ///< 0: no INTx; 1-4: INTA-INTD
  uint32_t msi_vectors = 0;           ///< MSI: vectors the function can request (0: no MSI)
  uint32_t msix_vectors = 0;          ///< MSI-X: table size (0: no MSI-X)
  std::vector<uint8_t> capabilities;  ///< capability ids in list order
};

/// Parses the first bytes of a configuration space (at least the 64-byte
/// header; capabilities are followed only inside `bytes`, loops cut off).
/// nullopt when fewer than 64 bytes are given.
[[nodiscard]] std::optional<ConfigSpaceView> ParseConfigSpace(std::span<const uint8_t> bytes);

/// Reads and parses `path` (a sysfs `config` file; up to 256 bytes are
/// read). nullopt when it cannot be read or is too short.
[[nodiscard]] std::optional<ConfigSpaceView> ReadConfigSpace(const std::filesystem::path& path);

}  // namespace vfiod::service
