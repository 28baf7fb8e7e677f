// Plain-text tables for vfioctl's human output: a header row and aligned
// columns separated by two spaces. Not for parsing: scripts use --json.
#pragma once

#include <ostream>
#include <string>
#include <vector>

namespace vfiod::vfioctl {

class Table {
 public:
  explicit Table(std::vector<std::string> headers) : headers_(std::move(headers)) {}

  /// Adds a row; missing cells print empty, extra cells are an error the
  /// caller should not make (they are dropped).
  void AddRow(std::vector<std::string> cells);

  [[nodiscard]] bool empty() const { return rows_.empty(); }

  /// Writes the header and rows, every column padded to its widest cell (the
  /// last column unpadded, so lines carry no trailing blanks).
  void Print(std::ostream& out) const;

 private:
  std::vector<std::string> headers_;
  std::vector<std::vector<std::string>> rows_;
};

/// Writes "key:" padded to `width`, then the value: one line of a key/value block.
void PrintField(std::ostream& out, const std::string& key, const std::string& value,
                size_t width = 16);

}  // namespace vfiod::vfioctl
