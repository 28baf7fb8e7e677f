// What config/README.md documents, for the tests that hold the parser, the
// documentation and the shipped config to the same keys.
#pragma once

#include <fstream>
#include <optional>
#include <regex>
#include <set>
#include <sstream>
#include <string>

namespace vfiod::testing {

/// The keys of section `section` of config/README.md under `source_dir`: the
/// first cell (`key`) of each table row between "## `<section>`" and the
/// next "## " heading. nullopt when the file or the heading is missing.
inline std::optional<std::set<std::string>> DocumentedConfigKeys(const std::string& source_dir,
                                                                 const std::string& section) {
  std::ifstream in(source_dir + "/config/README.md");
  std::stringstream text_of;
  text_of << in.rdbuf();
  const std::string readme = text_of.str();
  const auto start = readme.find("## `" + section + "`");
  if (start == std::string::npos) {
    return std::nullopt;
  }
  const auto end = readme.find("\n## ", start + 1);
  const std::string text = readme.substr(start, end - start);
  std::set<std::string> documented;
  const std::regex row(R"(\n\| `([a-z_]+)` \|)");
  for (auto it = std::sregex_iterator(text.begin(), text.end(), row); it != std::sregex_iterator();
       ++it) {
    documented.insert((*it)[1]);
  }
  return documented;
}

}  // namespace vfiod::testing
