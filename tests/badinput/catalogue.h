// The bad-input catalogue as data: rows read from the markdown table in
// tests/badinput/CATALOGUE.md (the table is the document and the test input).
#pragma once

#include <fstream>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

namespace vfiod::itest {

/// One row: | id | category | setup | method | input | reply | detail | checks |
struct CatalogueRow {
  std::string id;        ///< unique, e.g. "W03"
  std::string category;  ///< wire, envelope, types, ranges, fds, seals, policy, ...
  std::string setup;     ///< a fixture the test implements ("none", "container", ...)
  std::string method;    ///< a method name, or "raw" (input is a JSON string of bytes)
  std::string input;     ///< params JSON (method rows) or a JSON string (raw rows)
  std::string reply;     ///< expected replies: "-32602", "[-32600,0]", "none", "... close"
  std::string detail;    ///< substring of the first error's data.detail ("" = unchecked)
  std::string checks;    ///< prose: what the row checks
  int line = 0;          ///< line in the file, for messages
};

/// gtest prints a row by its id (not as bytes).
inline void PrintTo(const CatalogueRow& row, std::ostream* os) { *os << row.id; }

/// The cells of a markdown table line: split on '|' not preceded by '\',
/// "\|" unescaped, cells trimmed and one pair of enclosing backticks removed.
inline std::vector<std::string> SplitTableLine(const std::string& line) {
  std::vector<std::string> cells;
  std::string cell;
  for (size_t i = 1; i < line.size(); ++i) {  // line[0] is the leading '|'
    if (line[i] == '\\' && i + 1 < line.size() && line[i + 1] == '|') {
      cell += '|';
      ++i;
    } else if (line[i] == '|') {
      cells.push_back(cell);
      cell.clear();
    } else {
      cell += line[i];
    }
  }
  for (auto& c : cells) {
    size_t b = c.find_first_not_of(' ');
    size_t e = c.find_last_not_of(' ');
    c = b == std::string::npos ? "" : c.substr(b, e - b + 1);
    if (c.size() >= 2 && c.front() == '`' && c.back() == '`') {
      c = c.substr(1, c.size() - 2);
    }
  }
  return cells;
}

/// Every data row of every table in `path` whose header starts with "id".
/// A table line that does not have exactly eight cells is returned with an
/// empty id and its line number (the well-formedness test reports it).
inline std::vector<CatalogueRow> ReadCatalogue(const std::string& path) {
  std::ifstream in(path);
  std::vector<CatalogueRow> rows;
  std::string line;
  bool in_table = false;
  for (int n = 1; std::getline(in, line); ++n) {
    if (line.empty() || line[0] != '|') {
      in_table = false;
      continue;
    }
    auto cells = SplitTableLine(line);
    if (!in_table) {
      in_table = !cells.empty() && cells[0] == "id";
      continue;  // the header (or a table of another shape)
    }
    if (!cells.empty() && cells[0].starts_with("---")) {
      continue;
    }
    CatalogueRow row;
    row.line = n;
    if (cells.size() == 8) {
      row = {cells[0], cells[1], cells[2], cells[3], cells[4], cells[5], cells[6], cells[7], n};
    }
    rows.push_back(std::move(row));
  }
  return rows;
}

}  // namespace vfiod::itest
